"""Bad input: every case is a one-line `fewshot: error: ...` on stderr, exit code 2, no traceback, and
nothing the user had is changed (outputs of a refused command do not appear; existing files keep their bytes).

Each test runs the real CLI (`fewshot.cli.main`) in-process; one runs `python -m fewshot --debug` in a
subprocess to show that developers still get the traceback.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.cli import main
from fewshot.data.store import Store, StoreWriter
from fewshot.data.synthetic import prepare_synthetic
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError
from fewshot.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A tiny ProtoNet on the tiny store (8 train classes, 10 images a class): a few steps take about a second.
TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.steps": 4,
        "train.val_every": 2, "train.val_episodes": 5, "train.val_ways": 3, "train.val_shots": 1,
        "train.val_queries": 2, "train.checkpoint_every": 2, "train.log_every": 1, "train.device": "cpu",
        "train.channels_last": False}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import error_of  # noqa: E402


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative path -> digest): the evidence that nothing changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tiny_store, tmp_path_factory) -> Path:
    """A finished tiny run (read-only for the tests: copy it before changing it)."""
    run = tmp_path_factory.mktemp("bad-input") / "run"
    assert main(["train", "--data", str(tiny_store), "--out", str(run), "--no-progress", *TINY_ARGS]) == 0
    return run




# --- names -----------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_valid_ones(tmp_path, capsys):
    message = error_of(["prepare", "omniglott", "--out", tmp_path / "out"], capsys)
    assert message == ("fewshot: error: unknown dataset 'omniglott' (did you mean 'omniglot'?); choose one of: "
                       "imagefolder, miniimagenet, omniglot, omniglot-runs, synthetic, tieredimagenet")
    assert not (tmp_path / "out").exists()


def test_unknown_method_lists_the_valid_ones(tiny_store, tmp_path, capsys):
    message = error_of(["train", "--config", "protonett", "--data", tiny_store, "--out", tmp_path / "run"], capsys)
    assert message.startswith("fewshot: error: unknown method config 'protonett' (did you mean 'protonet'?); "
                              "choose one of: ce, ")
    assert "protonet, protonet-omniglot, siamese-triplet" in message and message.endswith("or give a .toml file")
    assert not (tmp_path / "run").exists()


def test_unknown_learner_and_backbone_list_the_valid_ones(tiny_store, tmp_path, capsys):
    message = error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, "learner=protonet"],
                       capsys)
    assert message == ("fewshot: error: unknown learner 'protonet' (did you mean 'prototypical'?); choose one of: "
                       "center, classifier, prototypical, siamese")
    message = error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, "backbone.name=conv5"],
                       capsys)
    assert message == ("fewshot: error: unknown backbone 'conv5' (did you mean 'conv4'?); choose one of: conv4, "
                       "resnet12, resnet18, timm")
    assert not (tmp_path / "run").exists()


def test_unknown_verb_and_missing_argument_are_one_line(capsys):
    message = error_of(["trian"], capsys)
    assert message.startswith("fewshot: error: argument VERB: invalid choice: 'trian' (choose from 'prepare', ")
    assert message.endswith("; see `fewshot --help`")
    assert error_of(["train", "--out", "somewhere"], capsys) == (
        "fewshot train: error: the following arguments are required: --data; see `fewshot train --help`")


# --- data folders and stores ---------------------------------------------------------------------------


def test_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert error_of(["train", "--data", missing, "--out", tmp_path / "run", *TINY_ARGS], capsys) == (
        f"fewshot: error: data folder {missing} does not exist; prepare one with `fewshot prepare`")
    assert not (tmp_path / "run").exists()


def test_empty_data_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error_of(["episodes", "--data", empty, "--out", tmp_path / "e.npz"], capsys) == (
        f"fewshot: error: {empty} is not a prepared store (no store.json); prepare one with `fewshot prepare`")
    assert not (tmp_path / "e.npz").exists()


def test_missing_or_empty_source_folder_for_prepare(tmp_path, capsys):
    empty = tmp_path / "downloads"
    empty.mkdir()
    assert error_of(["prepare", "omniglot", "--src", empty, "--out", tmp_path / "store", "--no-progress"],
                    capsys) == (
        f"fewshot: error: {empty} holds neither images_background.zip / images_evaluation.zip nor their extracted "
        "folders; point --src at the folder that has them (or add --download)")
    missing = tmp_path / "nowhere"
    assert error_of(["prepare", "omniglot", "--src", missing, "--out", tmp_path / "store"], capsys) == (
        f"fewshot: error: Omniglot source {missing} does not exist; give the folder holding images_background.zip")
    assert not (tmp_path / "store").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]


def test_images_that_do_not_match_the_manifest_checksum(store_copy, capsys):
    images = np.load(store_copy / "test" / "images.npy")
    images[0, 0, 0, 0] ^= 1  # one bit of one pixel
    np.save(store_copy / "test" / "images.npy", images)
    assert error_of(["verify", store_copy], capsys) == (
        f"fewshot: error: {store_copy / 'test' / 'images.npy'} does not match its manifest checksum; the store is "
        "damaged: prepare it again")


def test_labels_that_do_not_match_the_manifest_checksum_are_refused_on_open(store_copy, tmp_path, capsys):
    labels = np.load(store_copy / "train" / "labels.npy")
    labels[[9, 10]] = labels[[10, 9]]  # two images swap classes: the counts stay, the checksum does not
    np.save(store_copy / "train" / "labels.npy", labels)
    assert error_of(["train", "--data", store_copy, "--out", tmp_path / "run", *TINY_ARGS], capsys) == (
        f"fewshot: error: {store_copy / 'train' / 'labels.npy'} does not match its manifest checksum; the store is "
        f"damaged: run `fewshot verify {store_copy}` or prepare it again")
    assert not (tmp_path / "run").exists()


def test_prepare_refuses_to_replace_an_existing_store(store_copy, capsys):
    before = snapshot(store_copy)
    assert error_of(["prepare", "synthetic", "--out", store_copy], capsys) == (
        f"fewshot: error: {store_copy} already holds a prepared store; choose another --out or pass --force to "
        "replace it")
    assert snapshot(store_copy) == before


# --- episode files --------------------------------------------------------------------------------------


def test_episode_file_for_a_store_with_other_class_sizes(episodes_file, tmp_path, capsys):
    other = tmp_path / "other"
    prepare_synthetic(other, seed=0, images_per_class=12, splits={"train": 8, "val": 4, "test": 6})
    assert error_of(["eval", "--backbone", "pixels", "--data", other, "--episodes", episodes_file, "--device", "cpu",
                     "--out", tmp_path / "results"], capsys) == (
        f"fewshot: error: episode file {episodes_file} expects 10 images of class 'glyph012' but the store has 12; "
        "it was made for a different store")
    assert not (tmp_path / "results").exists()


def test_episode_file_for_another_dataset(episodes_file, tmp_path, capsys):
    other = tmp_path / "glyphs"
    with StoreWriter(other, "glyphs", "test") as writer:
        writer.add_split("test", np.zeros((6, 4, 4, 1), np.uint8), [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert error_of(["eval", "--backbone", "pixels", "--data", other, "--episodes", episodes_file, "--device", "cpu"],
                    capsys) == (
        f"fewshot: error: episode file {episodes_file} was made for dataset 'synthetic' but the store holds "
        "'glyphs'; use episodes made for this dataset")


def test_modified_or_unreadable_episode_files(tiny_store, episodes_file, tmp_path, capsys):
    with np.load(episodes_file) as data:
        arrays = {key: data[key].copy() for key in data.files}
    arrays["query"][0, 0, 0] = arrays["support"][0, 0, 0]  # a query that is also a support image
    np.savez(tmp_path / "edited.npz", **arrays)
    base = ["eval", "--backbone", "pixels", "--data", tiny_store, "--device", "cpu", "--episodes"]
    assert error_of([*base, tmp_path / "edited.npz"], capsys) == (
        f"fewshot: error: episode file {tmp_path / 'edited.npz'} fails its checksum; it was modified or damaged, "
        "regenerate it")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert error_of([*base, tmp_path / "junk.npz"], capsys) == (
        f"fewshot: error: episode file {tmp_path / 'junk.npz'} is not a readable fewshot episode file (File is not "
        "a zip file)")
    assert error_of([*base, tmp_path / "absent.npz"], capsys) == (
        f"fewshot: error: episode file {tmp_path / 'absent.npz'} does not exist; make one with `fewshot episodes`")


def test_ways_larger_than_the_split(tiny_store, tmp_path, capsys):
    assert error_of(["episodes", "--data", tiny_store, "--ways", 7, "--out", tmp_path / "e.npz"], capsys) == (
        "fewshot: error: ways=7 is more than the 6 classes of the split; use --ways 6 or fewer")
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, "episodes.ways=9"],
                    capsys) == ("fewshot: error: episodes.ways=9 is more than the 8 classes of the train split; use "
                                "episodes.ways=8 or fewer")  # config keys, not flags train does not have
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "run").exists()


def test_shots_plus_queries_larger_than_the_smallest_class_names_it(tiny_store, tmp_path, capsys):
    assert error_of(["episodes", "--data", tiny_store, "--shots", 5, "--queries", 6, "--out", tmp_path / "e.npz"],
                    capsys) == (
        "fewshot: error: shots + queries = 11 is more than the 10 images of 'glyph012' (the smallest class of the "
        "split); lower --shots or --queries")
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("flag, value", [("--ways", 0), ("--shots", -1), ("--queries", 0), ("--count", -5)])
def test_zero_or_negative_episode_counts_on_the_command_line(flag, value, tiny_store, tmp_path, capsys):
    assert error_of(["episodes", "--data", tiny_store, flag, value, "--out", tmp_path / "e.npz"], capsys) == (
        f"fewshot episodes: error: argument {flag}: must be a positive integer, got {value}; "
        "see `fewshot episodes --help`")
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("key, value", [("episodes.ways", 0), ("episodes.shots", -1), ("episodes.queries", 0),
                                        ("train.val_episodes", 0), ("train.steps", -3), ("train.checkpoint_every", 0)])
def test_zero_or_negative_counts_in_the_config(key, value, tiny_store, tmp_path, capsys):
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, f"{key}={value}"],
                    capsys) == f"fewshot: error: override: {key} must be a positive integer, got {value}"
    assert not (tmp_path / "run").exists()


def test_negative_keep_every_in_the_config(tiny_store, tmp_path, capsys):
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, "train.keep_every=-500"],
                    capsys) == ("fewshot: error: override: train.keep_every must be 0 (keep no step) or a step "
                                "interval, got -500")
    assert not (tmp_path / "run").exists()


def test_eval_of_a_checkpoint_that_is_not_a_step_names_the_choices(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    episodes = Path(__file__).parents[2] / "episodes" / "omniglot-vinyals-test-5w1s-15q-1000.npz"
    assert error_of(["eval", "--run", run, "--checkpoint", "step-five", "--episodes", episodes], capsys) == (
        "fewshot: error: checkpoint 'step-five' is not best, last or step-N (a step kept with train.keep_every)")


# --- configs --------------------------------------------------------------------------------------------


def test_unknown_config_key_suggests_the_closest(tiny_store, tmp_path, capsys):
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", "train.setps=10"], capsys) == (
        "fewshot: error: override: unknown config key 'train.setps'; did you mean 'train.steps'?")
    method = tmp_path / "mine.toml"
    method.write_text('learner = "prototypical"\n[optim]\nlrate = 0.01\n')
    assert error_of(["train", "--config", method, "--data", tiny_store, "--out", tmp_path / "run"], capsys) == (
        f"fewshot: error: {method}: unknown config key 'optim.lrate'; did you mean 'optim.lr'?")
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", "optim.lr"], capsys) == (
        "fewshot: error: override 'optim.lr' is not key=value (for example optim.lr=0.001)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=fast", "optim.lr must be a float like 0.001, got 'fast'"),
    ("train.steps=1.5", "train.steps must be an int like 2000, got '1.5'"),
    ("train.compile=maybe", "train.compile must be a bool like False, got 'maybe'"),
])
def test_config_value_of_the_wrong_type(override, expected, tiny_store, tmp_path, capsys):
    assert error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", override], capsys) == (
        f"fewshot: error: override: {expected}")
    assert not (tmp_path / "run").exists()


def test_wrong_type_in_a_config_file(tiny_store, tmp_path, capsys):
    method = tmp_path / "mine.toml"
    method.write_text('[train]\nsteps = "many"\n')
    assert error_of(["train", "--config", method, "--data", tiny_store, "--out", tmp_path / "run"], capsys) == (
        f"fewshot: error: {method}: train.steps must be an int like 2000, got 'many'")


# --- results folders ------------------------------------------------------------------------------------


def test_results_folder_inside_a_file(tiny_store, episodes_file, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    assert error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--episodes", episodes_file,
                     "--device", "cpu", "--out", blocker / "results"], capsys) == (
        f"fewshot: error: results folder {blocker / 'results'} is not writable (Not a directory); choose another "
        "--out or --results")
    assert blocker.read_text() == "not a folder"


def test_bench_checks_its_results_folder_before_training(tiny_store, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    assert error_of(["bench", "protonet", "--data", tiny_store, "--seeds", "0", "--results", blocker / "results",
                     "--runs", tmp_path / "runs", "--device", "cpu", *TINY_ARGS], capsys) == (
        f"fewshot: error: results folder {blocker / 'results'} is not writable (Not a directory); choose another "
        "--out or --results")
    assert not (tmp_path / "runs").exists()  # nothing was trained


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_folder(tiny_store, episodes_file, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        message = error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--episodes", episodes_file,
                            "--device", "cpu", "--out", results], capsys)
    finally:
        results.chmod(0o755)
    assert message == (f"fewshot: error: results folder {results} is not writable (Permission denied); choose "
                       "another --out or --results")
    assert list(results.iterdir()) == []


def test_permission_denied_by_the_file_system(tiny_store, episodes_file, tmp_path, capsys, monkeypatch):
    """What a read-only folder does for any user (root included): the OS refuses to create a file there."""
    results = tmp_path / "results"
    results.mkdir()

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--episodes", episodes_file,
                     "--device", "cpu", "--out", results], capsys) == (
        f"fewshot: error: results folder {results} is not writable (Permission denied); choose another --out or "
        "--results")
    assert list(results.iterdir()) == []


# --- runs and checkpoints -------------------------------------------------------------------------------


def test_checkpoint_from_a_different_architecture(trained_run, episodes_file, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    config["backbone"]["hidden"] = 16  # the checkpoint holds hidden=8 weights
    (run / "config.json").write_text(json.dumps(config))
    assert error_of(["eval", "--run", run, "--episodes", episodes_file, "--device", "cpu"], capsys) == (
        f"fewshot: error: checkpoint {run / 'checkpoints' / 'best.pt'} does not fit this model (size mismatch for "
        "backbone.blocks.0.0.weight: copying a param with shape torch.Size([8, 1, 3, 3]) from checkpoint, the shape "
        "in current model is torch.Size([16, 1, 3, 3])); it was saved with a different architecture or config")


def test_truncated_checkpoints(trained_run, tiny_store, episodes_file, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    assert error_of(["eval", "--run", run, "--episodes", episodes_file, "--device", "cpu"], capsys) == (
        f"fewshot: error: checkpoint {best} is truncated or not a fewshot checkpoint (PytorchStreamReader failed "
        "reading zip archive: failed finding central directory); resume from another checkpoint or train again")
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(b"")
    before = snapshot(run)
    assert error_of(["train", "--data", tiny_store, "--out", run, "--resume", *TINY_ARGS], capsys) == (
        f"fewshot: error: checkpoint {last} is truncated or not a fewshot checkpoint (EOFError); resume from another "
        "checkpoint or train again")
    assert snapshot(run) == before


def test_an_existing_run_is_not_overwritten_and_resume_needs_the_same_config(trained_run, tiny_store, tmp_path,
                                                                            capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = snapshot(run)
    assert error_of(["train", "--data", tiny_store, "--out", run, *TINY_ARGS], capsys) == (
        f"fewshot: error: run folder {run} already holds a run; pass --resume to continue it or choose another --out")
    assert error_of(["train", "--data", tiny_store, "--out", run, "--resume", *TINY_ARGS, "optim.lr=0.01"],
                    capsys) == (
        f"fewshot: error: --resume: the config differs from {run / 'config.json'} in optim.lr = 0.001 there, 0.01 "
        f"now; resume with the same config and overrides, e.g. `--config {run / 'config.json'} --resume`, where "
        "only train.steps may be raised to extend the run")
    assert snapshot(run) == before


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_store, tmp_path, capsys):
    run = tmp_path / "run"
    message = error_of(["train", "--data", tiny_store, "--out", run, "--quiet", *TINY_ARGS, "optim.lr=1e30",
                        "train.steps=20", "train.checkpoint_every=1", "train.val_every=0"], capsys)
    found = re.fullmatch(r"fewshot: error: loss became (nan|inf|-inf) at step (\d+); stopped\. The last good "
                         r"checkpoint is (.+) \(step (\d+)\); lower optim\.lr or check the data", message)
    assert found, message
    bad_step, good_step = int(found[2]), int(found[4])
    assert good_step == bad_step - 1 and 1 < bad_step <= 20
    assert found[3] == str(run / "checkpoints" / "last.pt")
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == good_step
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


# --- ablations and tables -------------------------------------------------------------------------------


def test_ablation_spec_with_an_empty_grid(tiny_store, tmp_path, capsys):
    spec = tmp_path / "empty.toml"
    spec.write_text(f'config = "protonet"\ndata = "{tiny_store}"\n[grid]\n')
    assert error_of(["ablate", spec, "--out", tmp_path / "out"], capsys) == (
        f"fewshot: error: {spec}: the [grid] is empty; list at least one config key with its values")
    spec.write_text(f'config = "protonet"\ndata = "{tiny_store}"\n[grid]\n"optim.lr" = []\n')
    assert error_of(["ablate", spec, "--out", tmp_path / "out"], capsys) == (
        f"fewshot: error: {spec}: grid key 'optim.lr' must list its values, e.g. 'optim.lr' = [a, b]")
    assert not (tmp_path / "out").exists()


def test_table_refuses_a_column_mixing_episode_sets(tiny_store, episodes_file, tmp_path, capsys):
    other = tmp_path / "other-3w1s.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 10, seed=1).save(other)  # same setting, new draw
    results = tmp_path / "results"
    for method, episodes in (("a", episodes_file), ("b", other)):
        assert main(["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episodes),
                     "--device", "cpu", "--method", method, "--out", str(results)]) == 0
    capsys.readouterr()
    assert error_of(["table", results], capsys) == (
        "fewshot: error: column 3w1s mixes results measured on different episode sets; table only results evaluated "
        "on the same episode files")


# --- developers -----------------------------------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "missing"
    with pytest.raises(FewshotError, match="does not exist"):
        main(["--debug", "info", str(missing)])
    done = subprocess.run([sys.executable, "-m", "fewshot", "--debug", "info", str(missing)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.rstrip().endswith(f"fewshot.errors.FewshotError: data folder {missing} does not exist; "
                                         "prepare one with `fewshot prepare`")
