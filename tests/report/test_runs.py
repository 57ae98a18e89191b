"""Finding the run folder behind a record: the path it names, else a run under --runs with the same
resolved config (config digest), else a unique run of the same folder name."""
from __future__ import annotations

import json

from fewshot.report.runs import RunIndex


def make_run(folder, config: dict):
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text("step,loss,train_acc,lr,val_acc,val_ci95,seconds\n1,1.0,0.5,0.001,,,0.1\n")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "checkpoints").mkdir()
    return folder


def record(run: str | None, config: dict | None) -> dict:
    return {"method": "m", "provenance": {"run": run, "config": config}}


def test_runs_are_found_by_path_digest_or_name(tmp_path):
    a = make_run(tmp_path / "runs" / "store-1234" / "proto-aaaa", {"name": "proto", "seed": 0})
    b = make_run(tmp_path / "runs" / "store-1234" / "proto-bbbb", {"name": "proto", "seed": 1})
    make_run(tmp_path / "runs" / "store-1234" / "proto-aaaa" / "nested", {"name": "inside a run"})  # not walked
    index = RunIndex([tmp_path / "runs"])
    assert index.runs == [a, b]
    assert index.find(record(str(b), {"name": "other"})) == b  # the path the record names wins
    assert index.find(record("work-runs/elsewhere/renamed", {"name": "proto", "seed": 1})) == b  # by digest
    assert index.find(record("work-runs/elsewhere/proto-aaaa", {"name": "changed"})) == a  # by folder name
    assert index.find(record("work-runs/elsewhere/unknown", {"name": "changed"})) is None
    assert index.find(record(None, None)) is None
    assert RunIndex([a]).runs == [a]  # a run folder given itself
    assert RunIndex([tmp_path / "missing"]).runs == []
