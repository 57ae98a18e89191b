"""Where a number came from: commit, package versions, machine, time."""
from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The commit of the fewshot checkout (with '+dirty' when it has uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    import numpy
    import torch

    import fewshot

    return {
        "fewshot": fewshot.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()} cpus={__import__('os').cpu_count()}",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
