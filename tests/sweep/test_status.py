"""Point status from hand-written point files: what each combination of run, state and submission reads as."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from fewshot.sweep import state as state_files
from fewshot.sweep.state import PointState, write_submission
from fewshot.sweep.status import collect_statuses


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def status(run: Path, done: bool = False):
    return collect_statuses([(run, done)])[0]


def test_never_launched_and_stopped_points_are_pending(tmp_path):
    run = tmp_path / "runs" / "store" / "protonet-abc"
    first = status(run)
    assert (first.state, first.detail, first.in_flight) == ("pending", "not started", False)
    write(run / "config.json", {"train": {"steps": 400}})
    (run / "log.csv").write_text("step,loss\n1,2.0\n2,1.9\n40,1.5\n")
    assert status(run).detail == "stopped after step 40 of 400; resumes from its last checkpoint"
    assert status(run, done=True).state == "done"


def test_a_running_job_and_one_that_died(tmp_path):
    run = tmp_path / "runs" / "store" / "protonet-abc"
    folder = run.parent / "points" / run.name
    write_submission(folder, "t1", "submitit-local", "123", stderr=str(tmp_path / "123_0_log.err"), pid=dead_pid())
    state = PointState(folder, "t1", {"job_id": "123", "stderr": str(tmp_path / "123_0_log.err")})
    state.start()  # this process: alive
    try:
        running = status(run)
        assert (running.state, running.job_id, running.in_flight) == ("running", "123", True)
        assert running.detail == f"on {socket.gethostname()}"
    finally:
        state.finish("running")  # stop the heartbeat, leave the file saying running
    saved = json.loads((folder / "state.json").read_text())
    (tmp_path / "123_0_log.err").write_text("Traceback ...\n  File x\nRuntimeError: CUDA out of memory\n\n")
    write(folder / "state.json", {**saved, "pid": dead_pid()})  # the job died without a word
    died = status(run)
    assert (died.state, died.error, died.in_flight) == ("failed", "RuntimeError: CUDA out of memory", False)
    assert "stopped without reporting" in died.detail and died.log == str(tmp_path / "123_0_log.err")


def test_another_hosts_job_lives_by_its_heartbeat(tmp_path):
    run = tmp_path / "runs" / "store" / "protonet-abc"
    folder = run.parent / "points" / run.name
    write_submission(folder, "t1", "slurm", "77_3")
    beat = {"token": "t1", "state": "running", "host": "node-elsewhere", "pid": 1, "job_id": "77_3"}
    write(folder / "state.json", {**beat, "heartbeat_at": time.time() - 10})
    assert status(run).state == "running"
    write(folder / "state.json", {**beat, "heartbeat_at": time.time() - 6 * state_files.HEARTBEAT_SECONDS})
    assert status(run).state == "failed"


def test_a_state_from_an_older_submission_is_not_read(tmp_path):
    run = tmp_path / "runs" / "store" / "protonet-abc"
    folder = run.parent / "points" / run.name
    write(folder / "state.json", {"token": "old", "state": "failed", "error": "an old error"})
    write(folder / "submission.json", {"token": "new", "executor": "local", "job_id": None,
                                       "host": socket.gethostname(), "pid": __import__("os").getpid()})
    waiting = status(run)  # its launcher (this process) is alive: waiting for a worker
    assert (waiting.state, waiting.detail, waiting.in_flight) == ("pending", "waiting to start", True)
    write(folder / "state.json", {"token": "new", "state": "failed", "error": "ways=99 is too many", "attempt": 1})
    failed = status(run)
    assert (failed.state, failed.error, failed.in_flight) == ("failed", "ways=99 is too many", False)
