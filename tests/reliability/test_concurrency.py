"""Concurrency: separate processes writing records into one results folder at the same moment never lose or
tear one. Each record is its own file under a unique name (uuid), written to a temporary file and renamed.

The writers are real processes started together (they wait on a shared "go" file), as `ablate --jobs N`
workers or several `fewshot bench`/`eval` commands sharing a results folder would be.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fewshot.bench import index_records
from fewshot.results.records import load_records

WRITERS = 4
RECORDS_EACH = 25
EPISODES = 3000  # a few tens of kB a record, so that writes overlap

# Builds records by hand (make_record would import torch for its provenance: seconds a process).
WRITER = r"""
import sys, time
from pathlib import Path
from fewshot.results.records import RECORD_FORMAT, RECORD_VERSION, write_record

writer, folder, shared, go = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
(go.parent / f"ready-{writer}").touch()
while not go.exists():
    time.sleep(0.001)
for index in range(__RECORDS__):
    accuracy = [((writer * 7919 + index * 104729 + e) % 101) / 100 for e in range(__EPISODES__)]
    record = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "method": "same-method",
              "setting": "5w1s", "ways": 5, "shots": 1, "queries": 15, "dataset": "synthetic", "split": "test",
              "mean": 100 * sum(accuracy) / len(accuracy), "ci95": 0.0, "n_episodes": len(accuracy),
              "per_episode_accuracy": accuracy,
              "provenance": {"episodes_checksum": "ab" * 32, "store_checksum": "cd" * 32, "seed": writer,
                             "config": {"writer": writer, "index": index}}}
    write_record(record, folder)             # a unique name in the shared folder
    write_record(record, shared / "latest.json")  # everyone replaces the same file
"""


def test_four_processes_writing_at_once_lose_and_tear_nothing(tmp_path):
    results, shared, go = tmp_path / "results", tmp_path / "shared", tmp_path / "go"
    script = WRITER.replace("__RECORDS__", str(RECORDS_EACH)).replace("__EPISODES__", str(EPISODES))
    writers = [subprocess.Popen([sys.executable, "-c", script, str(w), str(results), str(shared), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(WRITERS)]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready-{w}").exists() for w in range(WRITERS)):
        assert all(p.poll() is None for p in writers), [p.communicate() for p in writers if p.poll() is not None]
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.01)
    go.touch()
    for process in writers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    files = sorted(results.iterdir())
    assert len(files) == WRITERS * RECORDS_EACH  # no temporary file left, no record lost
    assert all(f.suffix == ".json" and not f.name.startswith(".") for f in files)
    records = load_records([results])  # every file parses as a whole record
    written = sorted((r["provenance"]["config"]["writer"], r["provenance"]["config"]["index"]) for r in records)
    assert written == [(w, i) for w in range(WRITERS) for i in range(RECORDS_EACH)]
    for record in records:
        w, i = record["provenance"]["config"]["writer"], record["provenance"]["config"]["index"]
        assert record["per_episode_accuracy"][:2] == [((w * 7919 + i * 104729 + e) % 101) / 100 for e in range(2)]
        assert len(record["per_episode_accuracy"]) == EPISODES

    [latest] = sorted(shared.iterdir())  # the last rename won; the file is one writer's whole record
    record = json.loads(latest.read_text())
    assert record["provenance"]["config"]["index"] == RECORDS_EACH - 1
    assert len(record["per_episode_accuracy"]) == EPISODES

    # What bench and ablate see when they look for finished work: every record, by its own key.
    assert len(index_records(results)) == WRITERS * RECORDS_EACH
