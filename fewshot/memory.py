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


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """Raise a one-line FewshotError when `nbytes` exceed the memory available now."""
    free = available_bytes()
    if nbytes > free:
        raise FewshotError(f"{what} would need {_size(nbytes)} of memory, more than the {_size(free)} available; "
                           f"{fix}")
