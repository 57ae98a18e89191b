"""Sweeps: the points of an ablation or a seed bench, run by an executor, watched and collected from folders.

`fewshot ablate` and `fewshot bench` make one PointTask per point that still lacks records (task.py) and
hand them to `launch`, which leaves alone the points a live job already holds (status.py) and gives the rest
to the executor the options name (executors/: local, slurm, submitit-local). Each point writes its own
records; the caller collects them from the record folder, now or in a later command on any node.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fewshot.sweep.options import ExecutorOptions
from fewshot.sweep.status import PointStatus, collect_statuses
from fewshot.sweep.task import PointTask

__all__ = ["ExecutorOptions", "PointStatus", "PointTask", "SweepLaunch", "collect_statuses", "launch"]


@dataclass
class SweepLaunch:
    launched: list[PointTask]
    busy: list[PointTask]  # not launched: a live job (running or queued) holds them
    outcomes: Iterator[tuple[PointTask, dict]]  # as points finish (nothing when submitted jobs are not awaited)
    waits: bool


def launch(tasks: list[PointTask], options: ExecutorOptions, folder: str | Path, log: Callable[[str], None],
           limit: int | None = None, name: str = "fewshot") -> SweepLaunch:
    """Launch the tasks no live job holds (at most `limit`); iterate `outcomes` to run or await them."""
    from fewshot.sweep.registry import create_executor

    statuses = collect_statuses([(task.run_dir, False) for task in tasks])
    busy = [task for task, status in zip(tasks, statuses) if status.in_flight]
    free = [task for task, status in zip(tasks, statuses) if not status.in_flight]
    launched = free if limit is None else free[:max(0, limit)]
    executor = create_executor(options, folder)
    outcomes = executor.launch(launched, log, name=name) if launched else iter(())
    return SweepLaunch(launched, busy, outcomes, executor.waits)
