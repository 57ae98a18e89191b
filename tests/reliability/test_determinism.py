"""Determinism and security.

Determinism (CPU): the same seed, data and config give the same episodes, the same weights and the same
per-episode accuracies run after run. Security: checkpoints load with `weights_only=True`, dataset pickles
go through the restricted unpickler, and nothing read from a data file is executed or handed to a shell.
"""
from __future__ import annotations

import ast
import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.cli import main
from fewshot.config import load_config
from fewshot.data.store import Store
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.errors import FewshotError
from fewshot.evaluate.run import evaluate_run
from fewshot.runs.checkpoint import load_checkpoint
from fewshot.train.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PACKAGE = Path(__file__).resolve().parents[2] / "fewshot"
TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.steps": 4,
        "train.val_every": 2, "train.val_episodes": 5, "train.val_ways": 3, "train.val_shots": 1,
        "train.val_queries": 2, "train.checkpoint_every": 2, "train.log_every": 1, "train.device": "cpu",
        "train.channels_last": False}
PK = {"batch.classes": 4, "batch.per_class": 2}




@pytest.fixture(scope="module")
def test_episodes(tiny_store) -> list:
    return [make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 30, seed=0)]


def _losses(run: Path) -> list[str]:
    with open(run / "log.csv", newline="") as handle:
        return [row["loss"] for row in csv.DictReader(handle)]


# --- determinism ----------------------------------------------------------------------------------------


def test_the_same_seed_draws_the_same_episodes(tiny_store, tmp_path, capsys):
    files = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert main(["episodes", "--data", str(tiny_store), "--ways", "3", "--shots", "2", "--queries", "3",
                     "--count", "50", "--seed", str(seed), "--out", str(tmp_path / f"{name}.npz")]) == 0
        files.append(load_episode_file(tmp_path / f"{name}.npz"))
    capsys.readouterr()
    a, b, c = files
    assert a.checksum == b.checksum
    for field in ("classes", "support", "query"):
        assert np.array_equal(getattr(a.batch, field), getattr(b.batch, field))
    assert a.checksum != c.checksum and not np.array_equal(a.batch.classes, c.batch.classes)


@pytest.mark.parametrize("method, extra", [("protonet", {}), ("siamese-triplet-cir", PK)])
def test_two_runs_give_identical_weights_and_per_episode_accuracies(method, extra, tiny_store, test_episodes,
                                                                   tmp_path):
    """CIR draws its perturbations from torch's RNG, so the second method also checks the random paths."""
    config = load_config(method, {**TINY, **extra})
    records = []
    for name in ("first", "second"):
        train(config, tiny_store, tmp_path / name, progress=False)
        [record] = evaluate_run(tmp_path / name, test_episodes, device_name="cpu")
        records.append(record)
    first, second = records
    assert first["per_episode_accuracy"] == second["per_episode_accuracy"]
    assert (first["mean"], first["ci95"]) == (second["mean"], second["ci95"])
    assert len(set(first["per_episode_accuracy"])) > 1  # real, varied numbers, not a constant
    assert _losses(tmp_path / "first") == _losses(tmp_path / "second")
    a = load_checkpoint(tmp_path / "first" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "second" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_another_seed_gives_other_weights(tiny_store, tmp_path):
    """The check above can fail: a different seed changes the weights."""
    for seed in (0, 1):
        train(load_config("protonet", {**TINY, "seed": seed, "train.val_every": 0}), tiny_store, tmp_path / str(seed),
              progress=False)
    a = load_checkpoint(tmp_path / "0" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "1" / "checkpoints" / "last.pt")["model"]
    assert not all(torch.equal(a[k], b[k]) for k in a)


# --- security -------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls os.makedirs(marker): the stand-in for any code a hostile file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tiny_store, test_episodes, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config("protonet", {**TINY, "train.val_every": 0}), tiny_store, run, progress=False)
    marker = tmp_path / "code-ran"
    hostile = run / "checkpoints" / "best.pt"
    torch.save({"model": {}, "step": 1, "extra": _Payload(marker)}, hostile)

    with pytest.raises(FewshotError, match="holds os.makedirs, not only tensors"):
        load_checkpoint(hostile)
    episodes = tmp_path / "episodes.npz"
    test_episodes[0].save(episodes)
    assert main(["eval", "--run", str(run), "--episodes", str(episodes), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == (f"fewshot: error: checkpoint {hostile} holds os.makedirs, not only tensors and plain values; "
                   "refused, since loading it could run code: it is not a fewshot checkpoint\n")
    assert not marker.exists()
    torch.load(hostile, weights_only=False)  # the file really is hostile: a plain load runs its code
    assert marker.is_dir()


def test_a_dataset_pickle_that_would_run_code_is_refused_unrun(tmp_path, capsys):
    src, marker = tmp_path / "downloads", tmp_path / "code-ran"
    src.mkdir()
    for split in ("train", "val", "test"):
        with open(src / f"mini-imagenet-cache-{split}.pkl", "wb") as handle:
            pickle.dump({"image_data": _Payload(marker), "class_dict": {}}, handle, protocol=2)
    assert main(["prepare", "miniimagenet", "--src", str(src), "--out", str(tmp_path / "store"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot: error: ") and err.count("\n") == 1 and "os" in err and "makedirs" in err
    assert not marker.exists() and not (tmp_path / "store").exists()


SUBPROCESS = {f"subprocess.{f}" for f in ("run", "Popen", "call", "check_call", "check_output", "getoutput",
                                          "getstatusoutput")}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_code_path_executes_what_a_data_file_holds():
    """A scan of the package: every loader is the safe one, nothing runs a shell or evaluates text."""
    findings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent).as_posix()
        for node, name in _calls(ast.parse(path.read_text(), filename=where)):
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            line = f"{where}:{node.lineno} {ast.unparse(node)[:80]}"
            if name == "torch.load" and keywords.get("weights_only") != "True":
                findings.append(line)
            if name in ("np.load", "numpy.load") and keywords.get("allow_pickle") != "False":
                findings.append(line)
            if name in ("eval", "exec", "os.system", "os.popen", "compile"):
                findings.append(line)
            if name == "__import__" and not (node.args and isinstance(node.args[0], ast.Constant)):
                findings.append(line)  # a literal module name is harmless; a computed one is not
            if name in SUBPROCESS and ("shell" in keywords or not (node.args and isinstance(node.args[0], ast.List))):
                findings.append(line)  # only fixed argument lists, never a shell
            if name in ("pickle.load", "pickle.loads", "pickle.Unpickler"):
                # The restricted unpickler itself, and the training launcher reading back its own workers'
                # results from a private temporary folder; no data file goes through plain pickle.
                if where not in ("fewshot/data/unpickle.py", "fewshot/launch.py"):
                    findings.append(line)
    assert findings == []
