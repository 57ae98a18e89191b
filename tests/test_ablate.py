"""`fewshot ablate`: a 2 x 2 grid on a tiny store, stopped after one point and restarted."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from fewshot.ablate import expand, load_spec, run_ablation
from fewshot.cli import main
from fewshot.errors import FewshotError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_spec import write_ablation_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"


def write_spec(path: Path, store: Path, tiny: dict, grid: str | None = None, extra: str = "") -> Path:
    # Three steps, no validation, one checkpoint: each point trains in well under a second.
    overrides = {**tiny, "train.val_every": 0, "train.checkpoint_every": 3, "train.steps": 3}
    grid = grid if grid is not None else '"optim.lr" = [0.001, 0.01]\n"episodes.ways" = [3, 4]'
    return write_ablation_spec(path, store, overrides, grid, name="tiny-grid", extra=extra)


def test_grid_points_and_labels(tiny_store, tiny_train_overrides, tmp_path):
    spec = load_spec(write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides))
    points = expand(spec)
    assert [p.label for p in points] == ["optim.lr=0.001, episodes.ways=3", "optim.lr=0.001, episodes.ways=4",
                                         "optim.lr=0.01, episodes.ways=3", "optim.lr=0.01, episodes.ways=4"]
    assert [(p.config["optim"]["lr"], p.config["episodes"]["ways"], p.config["train"]["steps"]) for p in points] == [
        (0.001, 3, 3), (0.001, 4, 3), (0.01, 3, 3), (0.01, 4, 3)]
    assert len({p.digest for p in points}) == 4
    assert spec.out == tmp_path / "out"


def test_stopped_after_one_point_then_restarted(tiny_store, tiny_train_overrides, tmp_path):
    spec = load_spec(write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides))
    log: list[str] = []
    first = run_ablation(spec, max_points=1, device_name="cpu", log=log.append)
    assert (first.done_before, first.ran, first.pending, first.failed) == (0, 1, 3, [])
    results = tmp_path / "out" / "results"
    finished = {p: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(finished) == 1
    assert (tmp_path / "out" / "table.md").exists()  # a partial table already

    log.clear()
    second = run_ablation(spec, device_name="cpu", log=log.append)
    assert (second.done_before, second.ran, second.pending, second.failed) == (1, 3, 0, [])
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # the finished point was not redone
    assert len(list(results.glob("*.json"))) == 4
    assert sorted(r["method"] for r in second.records) == sorted(p.label for p in second.points)
    assert all(r["ablation"]["spec"] == "tiny-grid" for r in second.records)

    table = (tmp_path / "out" / "table.md").read_text()
    assert table.startswith("# Ablation tiny-grid\n")
    rows = [line for line in table.splitlines() if line.startswith("| optim.lr=")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {p.label}" for p in second.points]
    csv = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert csv[0] == "method,seeds,3w1s mean,3w1s ci95,3w1s bold" and len(csv) == 5
    png = (tmp_path / "out" / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (924, 352)  # 2 keys x 1 setting panels

    log.clear()
    third = run_ablation(spec, device_name="cpu", log=log.append)
    assert (third.done_before, third.ran) == (4, 0)


def test_a_baseline_point_is_compared_paired(tiny_store, tiny_train_overrides, tmp_path):
    spec = load_spec(write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides, grid='"optim.lr" = [0.01]',
                                extra='baselines = [{ "optim.lr" = 0.001 }]'))
    assert [p.label for p in expand(spec)] == ["baseline", "optim.lr=0.01"]
    outcome = run_ablation(spec, device_name="cpu", log=lambda line: None)
    assert outcome.ran == 2
    table = (tmp_path / "out" / "table.md").read_text()
    assert "; baseline: optim.lr=0.001." in table
    assert "| method | 3w1s | 3w1s vs baseline |" in table
    assert "| baseline | " in table and " | - |" in table


def test_spec_errors(tiny_store, tiny_train_overrides, tmp_path):
    with pytest.raises(FewshotError, match="the \\[grid\\] is empty"):
        load_spec(write_spec(tmp_path / "a.toml", tiny_store, tiny_train_overrides, grid=""))
    with pytest.raises(FewshotError) as error:
        load_spec(write_spec(tmp_path / "b.toml", tiny_store, tiny_train_overrides, grid='"optim.lrr" = [1]'))
    assert str(error.value) == f"{tmp_path / 'b.toml'}: [grid] unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
    with pytest.raises(FewshotError, match="grid key 'optim.lr' must list its values"):
        load_spec(write_spec(tmp_path / "c.toml", tiny_store, tiny_train_overrides, grid='"optim.lr" = []'))
    with pytest.raises(FewshotError) as error:  # named with the spec file and the grid, when the spec is read
        load_spec(write_spec(tmp_path / "d.toml", tiny_store, tiny_train_overrides, grid='"optim.lr" = [0.1, "x"]'))
    assert str(error.value) == (f"{tmp_path / 'd.toml'}: [grid] optim.lr = 'x': optim.lr must be a float like 0.001, "
                                "got 'x'")
    with pytest.raises(FewshotError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")


def test_shipped_specs_parse():
    names = sorted(p.name for p in ABLATIONS.glob("*.toml"))
    assert names == ["cir-strength-center.toml", "cir-strength-siamese.toml", "loss-vs-cir.toml", "shots.toml"]
    for path in ABLATIONS.glob("*.toml"):
        spec = load_spec(path)
        assert spec.grid and spec.episode_files, path
        assert all((ABLATIONS.parent / f).exists() for f in spec.episode_files), path


@pytest.mark.slow  # two spawned workers each import torch
def test_ablate_command_with_two_jobs(tiny_store, tiny_train_overrides, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides, grid='"optim.lr" = [0.001, 0.01]')
    assert main(["ablate", str(spec), "--jobs", "2", "--device", "cpu", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "running 2 now with 2 job(s)" in out and "2 of 2 points finished" in out
    assert len(list((tmp_path / "r").glob("*.json"))) == 2
    assert "| optim.lr=0.001 |" in out and "| optim.lr=0.01 |" in out
    report = load_spec(spec).out / "report" / "index.html"
    assert f"report: {report}" in out
    page = report.read_text()
    assert "ablation-table-1" in page and 'src="img/ablation-' in page and 'src="img/curves-ablation-1.png"' in page


def test_command_line_overrides_apply_under_the_grid(tiny_store, tiny_train_overrides, tmp_path):
    path = write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides)
    points = expand(load_spec(path, extra_overrides=["train.steps=2", "optim.lr=0.5"]))
    assert {p.config["train"]["steps"] for p in points} == {2}
    assert [p.config["optim"]["lr"] for p in points] == [0.001, 0.001, 0.01, 0.01]  # the grid wins
    with pytest.raises(FewshotError, match="override 'steps' is not key=value"):
        load_spec(path, extra_overrides=["steps"])
    with pytest.raises(FewshotError, match="override: unknown config key 'train.stepz'; did you mean 'train.steps'"):
        load_spec(path, extra_overrides=["train.stepz=2"])
