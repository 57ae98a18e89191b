"""A point as a submitit job that requeues itself when it is preempted or reaches its time limit.

submitit pickles the job, runs it on the node (`python -m submitit.core._submit`), and calls checkpoint()
when Slurm signals a preemption or the coming time limit. checkpoint() stops any torchrun of the job, marks
the point requeued, and hands submitit the same job to requeue; the requeued job finds checkpoints/last.pt
and resumes the run there (fewshot.points.train_or_reuse), and writes only the records still missing.
Nothing is read back from submitit's result pickles: the run and record folders are the results.
"""
from __future__ import annotations

from typing import Any

import submitit

from fewshot.sweep.state import PointState
from fewshot.sweep.task import PointTask, run_group
from fewshot.sweep.torchrun import stop_running


class PointFailed(RuntimeError):
    """The point's own error (its state.json holds it too)."""


class PointJob(submitit.helpers.Checkpointable):
    """The points of one run folder: one point, or a sweep of eval.head over one run (trained once, by the
    first; two jobs on one folder would meet its lock). They share a token and one state.json."""

    def __init__(self, tasks: list[PointTask]) -> None:
        self.tasks = list(tasks)
        self._state: PointState | None = None

    def __call__(self) -> dict:
        env = submitit.JobEnvironment()
        first = self.tasks[0]
        self._state = PointState(first.folder, first.token, {
            "job_id": env.job_id, "cluster": env.cluster,
            "stdout": str(env.paths.stdout), "stderr": str(env.paths.stderr)})
        for task in self.tasks:
            print(f"fewshot sweep point {task.label} seed {task.seed}: {task.run_dir}", flush=True)
        outcomes = run_group(self.tasks, self._state, log=lambda message: print(message, flush=True))
        failed = [o for o in outcomes if not o["ok"]]
        if failed:  # also a failed job for Slurm (sacct), after state.json has said why
            raise PointFailed(failed[0]["error"])
        print("point done" if len(outcomes) == 1 else f"{len(outcomes)} points done", flush=True)
        return {"ok": True}  # a token for submitit; the records are in the results folder

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        stop_running()
        if self._state is not None:
            self._state.finish("requeued")
        print("point requeued: it resumes from its last checkpoint", flush=True)
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {"tasks": self.tasks, "_state": None}  # the live state (a thread, a lock) stays in this process
