"""Where each point of a sweep stands: done, running, failed or pending.

Decided from the folders, never from submitit's pickles, so any node that sees the file system can tell:
- done: the record folder holds a record for every episode file of the point (the caller says so);
- otherwise the point's `state.json` (fewshot/sweep/state.py), when it belongs to the latest submission:
  failed (its error line and log), running (its process is alive on this host, or its heartbeat is fresh),
  or failed because its job stopped without a word (killed, out of memory, node lost: the log's last line);
- otherwise its `submission.json`: a job still queued (Slurm's sacct, or the local process) is pending and
  in flight; a job that ended before it started is failed;
- otherwise pending: never launched, or stopped at some step (its run resumes from checkpoints/last.pt).
A point with a live job (running or queued) is `in_flight`: launching the sweep again leaves it alone.
"""
from __future__ import annotations

import csv
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from fewshot.sweep import state as state_files
from fewshot.sweep.state import SUBMISSION, STATE, point_folder, read_json

STALE_BEATS = 5  # a remote job whose heartbeat is this many intervals old is taken for dead
SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "SIGNALING", "STAGE_OUT"}


@dataclass
class PointStatus:
    state: str  # done, running, failed, pending
    detail: str = ""
    job_id: str | None = None
    log: str | None = None
    error: str | None = None
    in_flight: bool = False  # a live job (running or queued) holds the point: it is not launched again


def collect_statuses(points: list[tuple[str | os.PathLike, bool]]) -> list[PointStatus]:
    """The status of each (run folder, done) pair; Slurm is asked once for all queued jobs."""
    files = []
    for run_dir, done in points:
        folder = point_folder(run_dir)
        submission, state = read_json(folder / SUBMISSION), read_json(folder / STATE)
        if state is not None and submission is not None and state.get("token") != submission.get("token"):
            state = None  # left by an older job
        files.append((Path(run_dir), done, submission, state))
    queued = [s["job_id"] for _, done, s, st in files
              if not done and s and s.get("executor") == "slurm" and s.get("job_id")
              and (st is None or st.get("state") == "requeued")]
    slurm = slurm_states(queued) if queued else {}
    return [_status(run_dir, done, submission, state, slurm) for run_dir, done, submission, state in files]


def _status(run_dir: Path, done: bool, submission: dict | None, state: dict | None,
            slurm: dict[str, str]) -> PointStatus:
    if done:
        how = f"{state['how']}" if state and state.get("state") == "done" and state.get("how") else ""
        attempts = f", {state['attempt']} attempts" if state and state.get("attempt", 1) > 1 else ""
        return PointStatus("done", how + attempts, job_id=(state or submission or {}).get("job_id"))
    job_id = (state or submission or {}).get("job_id")
    log = _log_path(state, submission)
    if state is not None and state.get("state") == "failed":
        return PointStatus("failed", f"attempt {state.get('attempt', 1)}", job_id, log, state.get("error"))
    if state is not None and state.get("state") == "running":
        alive = _alive(state.get("host"), state.get("pid"))
        if alive is None:  # another host: trust a fresh heartbeat
            alive = time.time() - float(state.get("heartbeat_at", 0)) < STALE_BEATS * state_files.HEARTBEAT_SECONDS
        if alive:
            where = f"on {state.get('host')}" + (f", {_progress(run_dir)}" if _progress(run_dir) else "")
            return PointStatus("running", where, job_id, log, in_flight=True)
        return PointStatus("failed", "its job stopped without reporting (killed, out of memory or node lost?)",
                           job_id, log, _last_line(log), in_flight=False)
    if submission is not None and (state is None or state.get("state") == "requeued"):
        again = "requeued, " if state is not None else ""
        queued = _queued(submission, slurm)
        if queued and slurm.get(job_id or "", "").startswith("RUNNING"):
            return PointStatus("running", f"{again}started on Slurm; no word from the job yet", job_id, log,
                               in_flight=True)
        if queued is True or queued is None:
            known = "" if queued else " (its state cannot be read from here)"
            what = f"{again}queued{known}" if job_id else f"{again}waiting to start"
            return PointStatus("pending", what, job_id, log, in_flight=True)
        if job_id:
            ended = slurm.get(job_id, "")
            ended = f" ({ended})" if ended and ended != "UNKNOWN" else ""
            return PointStatus("failed", f"its job ended{ended} before it reported", job_id, log,
                               _last_line(log))
    progress = _progress(run_dir)
    return PointStatus("pending", f"stopped after {progress}; resumes from its last checkpoint" if progress
                       else "not started")


def _queued(submission: dict, slurm: dict[str, str]) -> bool | None:
    """Whether the launch is still alive: True, False, or None when it cannot be told from here."""
    job_id = submission.get("job_id")
    if not job_id:  # launched by a command that runs it itself (local pool) or was still submitting
        return _alive(submission.get("host"), submission.get("pid")) or False
    if submission.get("executor") == "slurm":
        state = slurm.get(job_id, "UNKNOWN").split(" ")[0]  # "CANCELLED by 123"
        if state == "UNKNOWN":
            return None
        return state in SLURM_ACTIVE
    return _alive(submission.get("host"), submission.get("pid"))


def _alive(host: str | None, pid: int | None) -> bool | None:
    """Whether process `pid` of `host` runs (a zombie does not), or None for a process of another host."""
    if host != socket.gethostname() or not pid:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job (one sacct call, through submitit's watcher); UNKNOWN where sacct cannot say."""
    try:
        from submitit.slurm.slurm import SlurmInfoWatcher
    except ImportError:
        return {}
    watcher = SlurmInfoWatcher(delay_s=0)
    for job_id in job_ids:
        watcher.register_job(str(job_id))
    watcher.update()
    return {job_id: watcher.get_state(str(job_id), mode="cache") for job_id in job_ids}


def _log_path(state: dict | None, submission: dict | None) -> str | None:
    for source in (state, submission):
        if source and source.get("stderr"):
            return source["stderr"]
    return None


def _last_line(path: str | None) -> str | None:
    """The log's last non-empty line (its error, usually), read from the file's end."""
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _progress(run_dir: Path) -> str | None:
    """`step S of N` from the run's log.csv and config.json, when it has logged a step."""
    try:
        with open(run_dir / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        steps = json.loads((run_dir / "config.json").read_text())["train"]["steps"]
    except (OSError, KeyError, json.JSONDecodeError, csv.Error):
        return None
    step = next((row.get("step") for row in reversed(rows) if row.get("step")), None)
    return f"step {step} of {steps}" if step else None
