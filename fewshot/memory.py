"""Refuse an allocation that cannot fit in memory, before making it.

Linux overcommits: a huge numpy or torch allocation often succeeds and the process is killed by the OOM
killer later, when the pages are touched, with no message. So the callers that size arrays from user
numbers (episode counts, widths, batch sizes) estimate the bytes first and call `check_fits`.
"""
from __future__ import annotations

import os

from fewshot.errors import FewshotError


def available_bytes() -> int:
    """Memory this machine can still give (MemAvailable, else physical memory); a large number if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1024 or unit == "PB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PB"  # pragma: no cover


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, torch's OutOfMemoryError (a GPU), or torch's CPU allocator failing."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def out_of_memory_message(exc: BaseException) -> str:
    """What ran out, in one line (torch's messages run on with advice about allocator settings)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first.split(". ")[0][:160]
    return (f"out of memory ({first}); lower the batch (episodes.ways, episodes.shots, episodes.queries, "
            "batch.classes, train.episodes_per_step, eval.batch_episodes) or the model (backbone.hidden, head.dim)")


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """Raise a one-line FewshotError when `nbytes` exceed the memory available now."""
    free = available_bytes()
    if nbytes > free:
        raise FewshotError(f"{what} would need {_size(nbytes)} of memory, more than the {_size(free)} available; "
                           f"{fix}")
