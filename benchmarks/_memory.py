"""Resident memory of a process tree, sampled from /proc while it runs (Linux; no psutil needed).

`ru_maxrss` alone misleads for the store writers: pages of a memory-mapped output file count as resident
while mapped, though the kernel can drop them at any time, so anonymous and file-backed memory are
reported apart (Linux /proc/<pid>/status: RssAnon, RssFile + RssShmem), and a process tree is summed by
PSS (/proc/<pid>/smaps_rollup), which counts a page shared by forked workers once rather than per worker.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path


def _status(pid: int) -> dict[str, int]:
    """kB figures of /proc/<pid>/status; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _rollup(pid: int) -> dict[str, int]:
    """kB figures of /proc/<pid>/smaps_rollup (PSS: shared pages split among the processes sharing them)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids = []
        for task in tasks:
            kids += [int(c) for c in (task / "children").read_text().split()]
        return kids
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def rss_mb(pid: int | None = None) -> dict[str, float]:
    """Current RSS of one process: total, anonymous, file-backed (MiB)."""
    s = _status(pid or os.getpid())
    return {"rss": s.get("VmRSS", 0) / 1024, "anon": s.get("RssAnon", 0) / 1024,
            "file": (s.get("RssFile", 0) + s.get("RssShmem", 0)) / 1024}


def pss_mb(pid: int | None = None) -> dict[str, float]:
    """Proportional set size of one process: total, anonymous, file-backed (MiB)."""
    r = _rollup(pid or os.getpid())
    return {"pss": r.get("Pss", 0) / 1024, "anon": r.get("Pss_Anon", 0) / 1024,
            "file": (r.get("Pss_File", 0) + r.get("Pss_Shmem", 0)) / 1024}


class Sampler:
    """Samples the RSS of `pid` and its descendants every `interval` s; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak = {"main_rss": 0.0, "main_anon": 0.0, "main_file": 0.0, "tree_rss": 0.0, "tree_pss": 0.0,
                     "tree_pss_anon": 0.0, "tree_pss_file": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            main = rss_mb(self.pid)
            pids = tree(self.pid)
            members = [rss_mb(p) for p in pids]
            shares = [pss_mb(p) for p in pids]
            current = {"main_rss": main["rss"], "main_anon": main["anon"], "main_file": main["file"],
                       "tree_rss": sum(m["rss"] for m in members), "tree_pss": sum(m["pss"] for m in shares),
                       "tree_pss_anon": sum(m["anon"] for m in shares),
                       "tree_pss_file": sum(m["file"] for m in shares)}
            for key, value in current.items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(self.interval)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def maxrss_children_mb() -> float:
    """Largest peak RSS of any finished child (getrusage; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def maxrss_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
