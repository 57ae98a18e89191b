"""The small files that say where a point of a sweep stands, beside its run folder.

`RUNS/<store>/points/<run name>/` holds, for the run folder `RUNS/<store>/<run name>`:
- `submission.json`, written by the command that launched the point: a token, the executor, the job id and
  the job's log paths;
- `state.json`, written by the job itself (and only by it): running (with a heartbeat every
  HEARTBEAT_SECONDS, its host and pid), requeued, done or failed (with the error line).

The token ties a state to its submission, so a state left by an older job is never read as the current one.
Whether a point is done is never read from these files but from the record folder (fewshot/sweep/status.py).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from fewshot.atomic import write_json_atomic

HEARTBEAT_SECONDS = 30.0
SUBMISSION = "submission.json"
STATE = "state.json"


def point_folder(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / "points" / run_dir.name


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return value if isinstance(value, dict) else None


def write_submission(folder: Path, token: str, executor: str, job_id: str | None = None,
                     stdout: str | None = None, stderr: str | None = None, pid: int | None = None) -> None:
    """Record a new launch of the point; the state an older job left is removed first (the caller only
    launches points with no live job), so the point reads as queued until its new job starts."""
    (folder / STATE).unlink(missing_ok=True)
    write_json_atomic(folder / SUBMISSION, {
        "token": token, "executor": executor, "job_id": job_id, "stdout": stdout, "stderr": stderr,
        "host": socket.gethostname(), "pid": pid if pid is not None else os.getpid(),
        "submitted_at": time.time(), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


class PointState:
    """The job's side: `state.json` from start to end, with a heartbeat thread while it runs."""

    def __init__(self, folder: str | os.PathLike, token: str, job: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.token = token
        self.job = dict(job or {})  # job_id, stdout, stderr (submitit jobs)
        self.fields: dict[str, Any] = {}
        self._lock = threading.RLock()  # re-entrant: a signal handler may finish() inside finish()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        previous = read_json(self.folder / STATE) or {}
        attempt = previous.get("attempt", 0) + 1 if previous.get("token") == self.token else 1
        self.fields = {"token": self.token, "state": "running", "attempt": attempt, **self.job,
                       "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
        self._write()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="fewshot-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                if self._stop.is_set():
                    return
                self._write()

    def _write(self) -> None:
        self.fields["heartbeat_at"] = time.time()
        write_json_atomic(self.folder / STATE, self.fields)

    def finish(self, state: str, **fields: Any) -> None:
        """The last word: done, failed or requeued; the heartbeat stops first, so it cannot overwrite it."""
        self._stop.set()
        with self._lock:
            self.fields.update(state=state, finished_at=time.time(), **fields)
            self._write()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
