"""`fewshot bench`: one run per seed, one record per (run, episode file), and nothing done twice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fewshot.bench import bench, index_records, run_folder, store_id, train_or_reuse
from fewshot.cli import main
from fewshot.config import config_digest, load_config
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPISODES = {"ways": [3], "shots": [1, 2], "queries": 2, "count": 12}




def overrides(tiny: dict) -> list[str]:
    return [f"{k}={v}" for k, v in tiny.items()]


def run_bench(store, tmp_path, tiny, log, **kwargs):
    options = dict(EPISODES, seeds=[0, 1], results=tmp_path / "results", runs=tmp_path / "runs",
                   overrides=overrides(tiny), device_name="cpu", progress=False, log=log.append)
    options.update(kwargs)
    return bench("protonet", store, **options)


def test_bench_trains_each_seed_then_reuses_everything(tiny_store, tiny_train_overrides, tmp_path):
    log: list[str] = []
    records = run_bench(tiny_store, tmp_path, tiny_train_overrides, log, floor=True)
    assert sorted((r["method"], r["provenance"]["seed"], r["setting"]) for r in records) == [
        ("pixels", None, "3w1s"), ("pixels", None, "3w2s"),
        ("protonet", 0, "3w1s"), ("protonet", 0, "3w2s"), ("protonet", 1, "3w1s"), ("protonet", 1, "3w2s")]
    assert all(r["n_episodes"] == 12 for r in records)
    files = sorted((tmp_path / "results").glob("*.json"))
    assert len(files) == 6
    # Runs are named by config name and digest under the store's id; default episode files sit beside them.
    store = Store(tiny_store)
    runs = tmp_path / "runs" / store_id(store)
    for seed in (0, 1):
        config = load_config("protonet", [*overrides(tiny_train_overrides), f"seed={seed}"])
        run = runs / f"protonet-{config_digest(config)}"
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert sorted(p.name for p in (runs / "episodes").iterdir()) == [
        "synthetic-test-3w1s-2q-12-seed0.npz", "synthetic-test-3w2s-2q-12-seed0.npz"]
    stamps = {p: p.stat().st_mtime_ns for p in [*files, *runs.glob("*/run.json"), *runs.glob("*/checkpoints/*")]}

    log.clear()
    again = run_bench(tiny_store, tmp_path, tiny_train_overrides, log, floor=True)
    assert sorted(r["_path"] for r in again) == [str(p) for p in files]
    assert sum("record exists" in line for line in log) == 4 and not any("training" in line for line in log)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sorted((tmp_path / "results").glob("*.json")) == files


def test_a_lost_record_is_measured_again_from_the_finished_run(tiny_store, tiny_train_overrides, tmp_path):
    log: list[str] = []
    first = run_bench(tiny_store, tmp_path, tiny_train_overrides, log, seeds=[0])
    lost = next(r for r in first if r["setting"] == "3w2s")
    kept = next(r for r in first if r["setting"] == "3w1s")
    kept_stamp = Path(kept["_path"]).stat().st_mtime_ns
    Path(lost["_path"]).unlink()
    log.clear()
    second = run_bench(tiny_store, tmp_path, tiny_train_overrides, log, seeds=[0])
    assert any("reusing finished run" in line for line in log)
    remeasured = next(r for r in second if r["setting"] == "3w2s")
    assert remeasured["_path"] != lost["_path"] and Path(remeasured["_path"]).exists()
    # Same run, same episodes: the same accuracies.
    assert remeasured["per_episode_accuracy"] == lost["per_episode_accuracy"]
    assert Path(kept["_path"]).stat().st_mtime_ns == kept_stamp


def test_a_stopped_run_is_resumed(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", {**tiny_train_overrides, "seed": 0})
    run = run_folder(tmp_path / "runs", Store(tiny_store), config)
    log: list[str] = []
    assert train_or_reuse(config, tiny_store, run, False, "cpu", log.append) == "trained"
    assert train_or_reuse(config, tiny_store, run, False, "cpu", log.append) == "reused"
    summary = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(summary, status="running")))  # as if killed after a checkpoint
    assert train_or_reuse(config, tiny_store, run, False, "cpu", log.append) == "resumed"
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    # A folder stopped before its first checkpoint holds nothing to resume: it starts again.
    (run / "checkpoints" / "last.pt").unlink()
    (run / "run.json").unlink()
    assert train_or_reuse(config, tiny_store, run, False, "cpu", log.append) == "trained"
    other = load_config("protonet", {**tiny_train_overrides, "seed": 1})
    with pytest.raises(FewshotError, match="holds a run of another config"):
        train_or_reuse(other, tiny_store, run, False, "cpu", log.append)


def test_given_episode_files_and_refusals(tiny_store, tiny_train_overrides, tmp_path):
    path = tmp_path / "e.npz"
    make_episode_file(Store(tiny_store).split("test"), 4, 1, 3, 8, seed=5).save(path)
    records = run_bench(tiny_store, tmp_path, tiny_train_overrides, [], seeds=[0], episode_paths=[path])
    assert [(r["setting"], r["n_episodes"], r["queries"]) for r in records] == [("4w1s", 8, 3)]
    assert set(index_records(tmp_path / "results")) == {
        (config_digest(records[0]["provenance"]["config"]), records[0]["provenance"]["episodes_checksum"],
         Store(tiny_store).split("test").checksum)}
    with pytest.raises(FewshotError, match="give seeds with --seeds"):
        run_bench(tiny_store, tmp_path, {**tiny_train_overrides, "seed": 3}, [])
    with pytest.raises(FewshotError, match="ways=9 is more than the 6 classes"):
        run_bench(tiny_store, tmp_path, tiny_train_overrides, [], ways=[9])


def test_bench_command_prints_the_table(tiny_store, tiny_train_overrides, tmp_path, capsys):
    argv = ["bench", "protonet", "--data", str(tiny_store), "--ways", "3", "--shots", "1", "--seeds", "0",
            "--count", "10", "--queries", "2", "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "runs"),
            "--no-progress", "--device", "cpu", *overrides(tiny_train_overrides)]  # overrides after the options
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training protonet (seed 0)" in out
    assert "| method | 3w1s |" in out and "\n| protonet | **" in out
    report = tmp_path / "r" / "report-protonet" / "index.html"
    assert f"report: {report}" in out and 'src="img/curves.png"' in report.read_text()
    assert main(argv) == 0
    assert "record exists" in capsys.readouterr().out
