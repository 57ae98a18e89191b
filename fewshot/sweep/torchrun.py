"""A point trained on several GPUs of one job's allocation: `torchrun --standalone -m fewshot train ...`.

The job's own process stays the submitit job (it checkpoints, requeues and evaluates); training runs in
torchrun's processes, exactly as `torchrun -m fewshot train` does by hand (docs/distributed.md). One run over
several nodes is torchrun's job, not a sweep's.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

from fewshot.atomic import write_json_atomic
from fewshot.errors import FewshotError

_running: subprocess.Popen | None = None  # the torchrun of this job, stopped before the job requeues


def torchrun_command(nproc: int, config_file: str | Path, data: str | Path, run_dir: str | Path, resume: bool,
                     device: str) -> list[str]:
    """torchrun (as `python -m torch.distributed.run`, so the job's own interpreter) training one run."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "fewshot", "train", "--config", str(config_file), "--data", str(data), "--out", str(run_dir),
            "--device", device, "--no-progress", *(["--resume"] if resume else [])]


def torchrun_trainer(nproc: int, config_file: Path) -> Callable:
    """A stand-in for fewshot.train.loop.train that trains under torchrun; the resolved config goes to
    `config_file` (JSON), so the processes train exactly the config whose digest names the run folder."""

    def train(config: dict, data: str | Path, out: str | Path, resume: bool = False, progress: bool = False,
              device_name: str | None = None) -> None:
        global _running
        device = device_name or config["train"]["device"]
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        write_json_atomic(config_file, config)
        _running = subprocess.Popen([*torchrun_command(nproc, config_file, data, out, resume, device)])
        try:
            code = _running.wait()
        finally:
            _running = None
        if code != 0:
            raise FewshotError(f"training {out} under torchrun ({nproc} processes) exited with code {code}; the "
                               "job's log holds the processes' error")

    return train


def stop_running(timeout: float = 60.0) -> None:
    """Stop this job's torchrun, if any (it forwards the signal to its processes) and wait for it."""
    process = _running
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
