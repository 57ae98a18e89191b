"""Arguments: every config value is checked against its key's range where the config is resolved (one table,
fewshot/config.py CHECKS); sizes that cannot fit in memory are refused before anything is allocated;
command-line counts and ablation specs are checked before any work; no name is too long for a file name.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import fewshot.config as config_module
from fewshot.cli import main
from fewshot.config import check_config, load_config
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.results.records import safe_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import TINY, error_of  # noqa: E402

TINY = {**TINY, "train.steps": 2}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]


@pytest.mark.parametrize("override, expected", [
    ("seed=-1", "seed must be 0 or more, got -1"),
    ("optim.lr=nan", "optim.lr must be a finite number, got nan"),
    ("optim.lr=inf", "optim.lr must be a finite number, got inf"),
    ("optim.lr=-0.001", "optim.lr must be above 0.0, got -0.001"),
    ("optim.lr=0", "optim.lr must be above 0.0, got 0.0"),
    ("optim.weight_decay=-1e-4", "optim.weight_decay must be at least 0.0"),
    ("optim.weight_decay=nan", "optim.weight_decay must be a finite number"),
    ("optim.step_size=0", "optim.step_size must be a positive integer, got 0"),
    ("optim.gamma=0", "optim.gamma must be above 0.0"),
    ("optim.momentum=1", "optim.momentum must be below 1.0"),
    ("backbone.hidden=0", "backbone.hidden must be a positive integer, got 0"),
    ("head.dim=0", "head.dim must be a positive integer, got 0"),
    ("backbone.dropblock=1", "backbone.dropblock must be below 1.0, got 1.0"),
    ("backbone.dropblock=-0.1", "backbone.dropblock must be at least 0.0"),
    ("loss.distance=manhattan", "loss.distance must be one of euclidean, cosine, got 'manhattan'"),
    ("eval.distance=l1", "eval.distance must be one of euclidean, cosine, got 'l1'"),
    ("train.device=gpu", "train.device must look like auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train.device=cuda:x", "train.device must look like auto, cpu, cuda or cuda:N"),
    ("train.precision=fp8", "train.precision must be one of fp32, bf16, fp16"),
    ("cir.p=1.5", "cir.p must be at most 1.0"),
    ("loss.smoothing=1", "loss.smoothing must be below 1.0"),
    ("train.val_every=-5", "train.val_every must be 0 or more"),
    ("name=", "name must be a non-empty name without /"),
])
def test_a_value_outside_its_range_is_refused_before_anything_is_written(override, expected, tiny_store, tmp_path,
                                                                         capsys):
    line = error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, override], capsys)
    assert line == f"fewshot: error: override: {expected}" or expected in line, line
    assert not (tmp_path / "run").exists()


def test_a_bad_value_in_a_method_file_names_the_file(tiny_store, tmp_path, capsys):
    method = tmp_path / "mine.toml"
    method.write_text('learner = "prototypical"\n[optim]\nlr = -1.0\n')
    line = error_of(["train", "--config", method, "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS],
                    capsys)
    assert line == f"fewshot: error: {method}: optim.lr must be above 0.0, got -1.0"


def test_a_loss_the_learner_does_not_train_with_is_refused(tiny_store, tmp_path, capsys):
    line = error_of(["train", "--data", tiny_store, "--out", tmp_path / "run", *TINY_ARGS, "loss.name=triplet"],
                    capsys)
    assert "learner 'prototypical' trains with loss.name = 'prototypical'" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, expected", [
    (["train", "--nproc", "0"], "argument --nproc: must be a positive integer, got 0"),
    (["train", "--nproc", "-2"], "argument --nproc: must be a positive integer, got -2"),
    (["prepare", "synthetic", "--workers", "0"], "argument --workers: must be a positive integer, got 0"),
    (["ablate", "spec.toml", "--jobs", "0"], "argument --jobs: must be a positive integer, got 0"),
    (["ablate", "spec.toml", "--max-points", "-1"], "argument --max-points: must be 0 or more, got -1"),
    (["episodes", "--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
    (["prepare", "synthetic", "--seed", "-3"], "argument --seed: must be 0 or more, got -3"),
    (["demo", "--steps", "0"], "argument --steps: must be a positive integer, got 0"),
    (["demo", "--episodes", "0"], "argument --episodes: must be a positive integer, got 0"),
])
def test_counts_and_seeds_out_of_range_on_the_command_line_are_refused_before_any_work(argv, expected, tiny_store, tmp_path, capsys):
    extra = {"train": ["--data", tiny_store, "--out", tmp_path / "run"], "prepare": ["--out", tmp_path / "s"],
             "ablate": [], "episodes": ["--data", tiny_store, "--out", tmp_path / "e.npz"],
             "demo": ["--out", tmp_path / "demo"]}[argv[0]]
    assert expected in error_of([*argv, *extra], capsys)
    assert list(tmp_path.iterdir()) == []


# --- sizes that cannot fit in memory ----------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["episodes", "--ways", 3, "--shots", 1, "--queries", 2, "--count", 10**13], "drawing 10,000,000,000,000 episodes"),
    (["train", *TINY_ARGS, "train.val_every=1", f"train.val_episodes={10**13}", "train.val_ways=3",
      "train.val_queries=2"],
     "drawing 10,000,000,000,000 episodes"),
    (["train", *TINY_ARGS, f"backbone.hidden={10**6}"], "the model (weights, gradients and optimizer state)"),
    (["train", *TINY_ARGS, "head.kind=mlp", f"head.hidden={10**9}"], "the model"),
    (["train", *TINY_ARGS, f"train.episodes_per_step={10**9}"], "a training step of"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating(argv, expected, tiny_store, tmp_path, capsys):
    out = tmp_path / ("e.npz" if argv[0] == "episodes" else "run")
    line = error_of([argv[0], "--data", tiny_store, "--out", out, *argv[1:]], capsys)
    assert expected in line and "of memory, more than the" in line, line
    assert not out.exists()


# --- ablation specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("top, tables, expected", [
    (['seeds = "a"'], [], "seeds must be an integer of 0 or more, got 'a'"),
    (["seeds = [-1]"], [], "seeds must be an integer of 0 or more, got -1"),
    (["seeds = [1.5]"], [], "seeds must be an integer of 0 or more, got 1.5"),
    (["name = 5"], [], "name must be a string, got 5"),
    (["overrides = 3"], [], "overrides must be a table"),
    (["episodes = 4"], [], "episodes must be a table"),
    ([], ["[episodes]", 'ways = ["x"]'], "episodes.ways must be an integer of 1 or more, got 'x'"),
    ([], ["[episodes]", "queries = [1]"], "episodes.queries must be an integer of 1 or more, got [1]"),
    ([], ["[episodes]", "count = 0"], "episodes.count must be an integer of 1 or more, got 0"),
])
def test_wrong_types_in_an_ablation_spec_are_one_line(top, tables, expected, tiny_store, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join(['config = "protonet"', f'data = "{tiny_store}"', f'out = "{tmp_path / "out"}"',
                               *top, "[grid]", '"optim.lr" = [0.001]', *tables, ""]))
    line = error_of(["ablate", spec], capsys)
    assert expected in line and str(spec) in line, line
    assert not (tmp_path / "out").exists()


def test_a_grid_value_of_the_wrong_type_is_refused_before_any_point_runs(tiny_store, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join(['config = "protonet"', f'data = "{tiny_store}"', f'out = "{tmp_path / "out"}"',
                               "[grid]", '"optim.lr" = [0.001, "fast"]', ""]))
    assert "optim.lr must be a float like 0.001, got 'fast'" in error_of(["ablate", spec], capsys)
    assert not (tmp_path / "out").exists()


# --- names too long for a file name -----------------------------------------------------------------------


def test_a_method_name_of_any_length_gives_valid_file_names(tiny_store, tmp_path, capsys):
    episodes = tmp_path / "e.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 5, seed=0).save(episodes)
    name = "a-very-long-method-name-" * 20  # 480 characters: more than any file system's 255
    args = ["bench", "protonet", "--data", tiny_store, "--episodes", episodes, "--seeds", "0", "--runs",
            tmp_path / "runs", "--results", tmp_path / "results", "--device", "cpu", "--no-progress", *TINY_ARGS,
            f"name={name}"]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    [record] = (tmp_path / "results").glob("*.json")
    [run] = (tmp_path / "runs").glob("*/*")
    assert len(record.name) <= 255 and len(run.name) <= 255
    assert record.name.startswith("a-very-long-method-name-")
    assert json.loads(record.read_text())["method"] == name  # the record keeps the whole name
    other = name[:-1] + "X"  # two long names sharing their first characters still get different files
    assert safe_name(name) != safe_name(other)


def test_an_out_file_name_too_long_is_refused_before_the_work(tiny_store, tmp_path, capsys):
    episodes = tmp_path / "e.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 5, seed=0).save(episodes)
    out = tmp_path / ("r" * 300 + ".json")
    line = error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--episodes", episodes, "--out", out],
                    capsys)
    assert "longer than file systems allow" in line


# --- the range table is easy to extend and tolerant ------------------------------------------------------


def test_the_range_table_takes_new_keys_and_lets_unlisted_ones_through(monkeypatch):
    monkeypatch.setitem(config_module.VALID_KEYS, "eval.head_shots", 1)  # a key another change adds
    monkeypatch.setitem(config_module.DEFAULTS["eval"], "head_shots", 1)
    config = load_config("protonet", ["eval.head_shots=0"])  # no check listed: only its type is checked
    assert config["eval"]["head_shots"] == 0
    monkeypatch.setitem(config_module.CHECKS, "eval.head_shots", config_module.at_least(1))
    with pytest.raises(Exception, match="eval.head_shots must be 1 or more, got 0"):
        load_config("protonet", ["eval.head_shots=0"])


def test_a_saved_config_with_unknown_or_missing_keys_passes_the_check():
    config = load_config("protonet")
    config["eval"]["a_key_from_a_newer_version"] = "x"
    del config["train"]["keep_every"]  # a key an older version did not have
    check_config(config, "run/config.json")
    config["optim"]["lr"] = float("nan")
    with pytest.raises(Exception, match="run/config.json: optim.lr must be a finite number"):
        check_config(config, "run/config.json")


def test_running_out_of_memory_during_a_step_is_one_line_and_leaves_a_clean_folder(tiny_store, tmp_path, capsys,
                                                                                    monkeypatch):
    import torch

    import fewshot.train.loop as loop

    real = loop._TrainingRun.train_step
    calls = {"n": 0}

    def step_that_does_not_fit(self):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint of step 2
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 164.00 GiB. GPU 0 has ...")
        return real(self)

    monkeypatch.setattr(loop._TrainingRun, "train_step", step_that_does_not_fit)
    run = tmp_path / "run"
    args = ["train", "--data", tiny_store, "--out", run, "--quiet", *TINY_ARGS, "train.steps=4"]
    line = error_of(args, capsys)
    assert line.startswith("fewshot: error: at step 3: out of memory (CUDA out of memory") and "--resume" in line
    calls["n"] = -100
    assert main([str(a) for a in args + ["--resume"]]) == 0  # memory free again: it continues

    calls["n"] = 2  # the next call is the first step of a new run: nothing to resume, its files are removed
    line = error_of(["train", "--data", tiny_store, "--out", tmp_path / "other", "--quiet", *TINY_ARGS], capsys)
    assert "at step 1: out of memory" in line and "files were removed" in line
    assert not (tmp_path / "other").exists()


def test_the_cpu_allocator_failing_is_one_line_in_any_verb(tiny_store, tmp_path, capsys, monkeypatch):
    import fewshot.evaluate.run as evaluate_run

    def refuse(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 900000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(evaluate_run, "evaluate_files", refuse)
    monkeypatch.setattr(evaluate_run, "score_episodes_exact", refuse)  # the pixel floor's exact scoring
    episodes = tmp_path / "e.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 5, seed=0).save(episodes)
    line = error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--episodes", episodes], capsys)
    assert "out of memory ([enforce fail at alloc_cpu.cpp:114] data" in line and "lower the batch" in line
