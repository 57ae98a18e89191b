"""Folder locks: one live process at a time works in a run folder or an ablation's output folder.

`hold_folder(DIR, what)` takes an exclusive `fcntl.flock` on `DIR/.fewshot.lock` (creating the folder if
needed) and writes the holder's pid and command into it. The kernel drops the lock when the holder exits,
however it exits (kill -9, a crash, a power cut), so a lock can never be left stuck: a stale lock file is
simply taken by the next command. A second process asking for a held folder gets a one-line FewshotError
naming the holder's pid, at once (it never waits). The file is removed when the holder is done.

Locks are per process and reentrant: `bench` holds a run folder while `train`, inside it, asks again.
Written by hand: fcntl is the standard library's own binding, and the packages that wrap it (filelock,
portalocker) add waiting and timeouts we do not want, not the reentrancy we need.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fewshot.errors import FewshotError

LOCK_NAME = ".fewshot.lock"

_held: dict[str, tuple[int, int]] = {}  # resolved folder -> (open lock fd, how many holders in this process)


def lock_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / LOCK_NAME


def holder(folder: str | os.PathLike) -> dict:
    """What the lock file says about its last holder ({} when unreadable): pid, command."""
    try:
        info = json.loads(lock_path(folder).read_text() or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire(folder: Path, what: str) -> int:
    path = lock_path(folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = holder(folder)
            who = f"process {info['pid']}" if "pid" in info else "another process"
            command = f" ({info['command']})" if info.get("command") else ""
            raise FewshotError(f"{folder} is in use by {who}{command}; wait for it to finish or stop it, "
                               f"then run this {what} again") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file we locked may have been removed (and re-created) meanwhile: lock the one at the path
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    info = json.dumps({"pid": os.getpid(), "command": " ".join(["fewshot", *sys.argv[1:]])[:300]})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (info + "\n").encode(), 0)
    return fd


@contextmanager
def hold_folder(folder: str | os.PathLike, what: str = "command") -> Iterator[Path]:
    """Hold `folder` (created if missing) for the block; refuse at once if another live process holds it."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _held:
        fd, count = _held[key]
        _held[key] = (fd, count + 1)
    else:
        try:
            _held[key] = (_acquire(folder, what), 1)
        except BaseException:
            if created:
                _remove_if_only_lock(folder)
            raise
    try:
        yield folder
    finally:
        fd, count = _held[key]
        if count > 1:
            _held[key] = (fd, count - 1)
        else:
            del _held[key]
            # Removed while still held: a process that opened the old file then finds it is no longer the
            # one at the path (the inode check in _acquire) and tries again. After a kill the file stays,
            # unlocked, and the next holder takes it.
            lock_path(folder).unlink(missing_ok=True)
            if created:  # a refused or failed command leaves no folder of its own behind
                _remove_if_only_lock(folder)
            os.close(fd)


def _remove_if_only_lock(folder: Path) -> None:
    """Remove a folder this process created when nothing but the lock file is in it."""
    try:
        if [p.name for p in folder.iterdir()] in ([], [LOCK_NAME]):
            lock_path(folder).unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass


def is_held_here(folder: str | os.PathLike) -> bool:
    """Whether this process holds `folder`."""
    return str(Path(folder).resolve()) in _held
