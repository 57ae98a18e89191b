"""`fewshot eval`: an evaluation repeated into the same folder replaces its record; it prints what table prints."""
from __future__ import annotations

import json

import numpy as np

from fewshot.cli import main
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.results.records import evaluation_identity, make_record
from fewshot.results.tables import format_table


def _episodes(store, tmp_path, shots=1):
    path = tmp_path / f"e{shots}.npz"
    make_episode_file(Store(store).split("test"), 3, shots, 2, 20, seed=0).save(path)
    return path


def test_evaluating_twice_replaces_the_record_and_says_so(tiny_store, tmp_path, capsys):
    episodes = _episodes(tiny_store, tmp_path)
    args = ["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episodes),
            "--out", str(tmp_path / "results"), "--device", "cpu"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "replaced" not in first
    assert main(args) == 0
    second = capsys.readouterr().out
    files = list((tmp_path / "results").glob("*.json"))
    assert len(files) == 1
    assert f"-> {files[0]} (replaced the earlier record of this same evaluation)" in second
    assert main(["table", str(tmp_path / "results")]) == 0  # before: two records of one method, refused


def test_a_record_without_a_head_is_the_default_heads_evaluation():
    meta = {"ways": 5, "shots": 1, "queries": 15, "dataset": "d", "split": "test", "checksum": "c" * 64}
    old = make_record("m", np.array([0.5, 1.0]), meta, "s" * 64, {"seed": 0}, "runs/x")
    del old["head"]  # as records written before eval heads existed
    new = make_record("m", np.array([0.5, 1.0]), meta, "s" * 64, {"seed": 0}, "runs/./x")
    other = make_record("m", np.array([0.5, 1.0]), meta, "s" * 64, {"seed": 0}, "runs/x",
                        head={"name": "logistic", "C": 1.0, "label": "logistic"})
    assert evaluation_identity(old) == evaluation_identity(new) != evaluation_identity(other)


def _rounding_trap() -> np.ndarray:
    """Per-episode accuracies whose mean or ci95, rounded to 4 decimals first, round differently to 2."""
    rng = np.random.default_rng(0)
    for _ in range(100_000):
        acc = rng.integers(0, 31, 40) / 30
        mean, ci = acc.mean() * 100, 1.96 * (acc * 100).std() / np.sqrt(40)
        if f"{round(mean, 4):.2f}" != f"{mean:.2f}" or f"{round(ci, 4):.2f}" != f"{ci:.2f}":
            return acc
    raise AssertionError("no trap found")


def test_eval_prints_the_numbers_table_prints(tiny_store, tmp_path, capsys, monkeypatch):
    accuracies = _rounding_trap()
    import fewshot.evaluate.run as run

    def fake_pixels(data, files, device_name="auto", distance="euclidean", eval_settings=None):
        return [make_record("pixels", accuracies, files[0].meta, "s" * 64, {"backbone": "pixels"})]

    monkeypatch.setattr(run, "evaluate_pixels", fake_pixels)
    episodes = _episodes(tiny_store, tmp_path)
    assert main(["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episodes),
                 "--out", str(tmp_path / "r.json"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.split(": ", 1)[1].split(" -> ")[0]
    record = json.loads((tmp_path / "r.json").read_text())
    cell = format_table([record]).splitlines()[2].split("|")[2].strip(" *")
    assert printed == cell
