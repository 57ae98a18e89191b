"""Worker processes that die with the process that started them.

A pool worker (ablate --jobs N, prepare's decoders) whose parent is killed with SIGKILL gets no signal of
its own: it would finish its queue and then block forever, or run beside a rerun of the same command.
`die_with_parent(pid)` is called in each worker's initializer. On Linux it asks the kernel to send SIGKILL
when the parent dies (prctl PR_SET_PDEATHSIG); everywhere it also starts a watchdog thread that exits the
worker once `pid` is gone, which covers platforms without prctl and workers whose OS parent is a helper
(a forkserver's children see the forkserver die, not the command).

Written by hand: multiprocessing and concurrent.futures offer no parent-death option, and psutil would
only replace the few lines of the pid check.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL = 0.5  # seconds between checks where pidfd_open is missing


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: have the kernel send `sig` to this process when its parent dies. False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone for a child we reaped elsewhere)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _watch(pid: int) -> None:
    """Block until `pid` ends, then end this process at once (no cleanup: the parent's work is void)."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = None
    if fd is not None:  # readable when the process exits: no polling, no pid reuse race
        select.select([fd], [], [])
    else:
        while pid_alive(pid):
            time.sleep(WATCH_INTERVAL)
    os._exit(1)


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this (worker) process end when `parent_pid` (default: its parent) ends. Call it first thing."""
    parent_pid = parent_pid or os.getppid()
    set_parent_death_signal()
    if not pid_alive(parent_pid):  # the parent died before we got here: the death signal came too late
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="fewshot-lifeline", daemon=True).start()
