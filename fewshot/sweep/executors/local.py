"""`local`: points in this process (--jobs 1) or in a pool of worker processes on this machine."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

from fewshot.sweep.options import ExecutorOptions
from fewshot.sweep.registry import EXECUTORS
from fewshot.sweep.state import write_submission
from fewshot.sweep.task import PointTask, group_by_run, run_task


def _init_worker(threads: int, parent: int | None = None) -> None:
    import torch

    from fewshot.lifeline import die_with_parent

    die_with_parent(parent)  # a killed `ablate` takes its workers with it (they would train on beside a rerun)
    torch.set_num_threads(threads)


def _run_group(items: list[tuple[int, PointTask]]) -> list[tuple[int, dict]]:
    """Points that share one run folder (they differ only in their eval head), one after the other."""
    return [(index, run_task(task)) for index, task in items]


@EXECUTORS.register("local")
class LocalPool:
    """Runs the points and yields each outcome as it finishes; `jobs` workers get max(1, cores // jobs) torch
    threads each. Always waits: the points are this command's own processes."""

    waits = True

    def __init__(self, options: ExecutorOptions, folder: Path) -> None:
        self.jobs = options.jobs

    def launch(self, tasks: list[PointTask], log: Callable[[str], None],
               name: str = "fewshot") -> Iterator[tuple[PointTask, dict]]:
        for task in tasks:  # queued in this process: --status tells them from abandoned ones by its pid
            write_submission(task.folder, task.token, "local")
        if self.jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                yield task, run_task(task)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        # spawn, not fork: a forked child of a process that already ran torch can deadlock in its thread pools.
        # A sweep of eval.head shares one run between points: those go to one worker, in order.
        groups = [[(index, tasks[index]) for index in group] for group in group_by_run(tasks)]
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(groups)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
            futures = [pool.submit(_run_group, group) for group in groups]
            try:
                for future in as_completed(futures):
                    for index, outcome in future.result():
                        yield tasks[index], outcome
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
