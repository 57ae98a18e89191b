"""One point of a sweep (a config at a seed), as plain picklable data, and the function that runs it.

Whatever runs the point (a worker of the local pool, a submitit job on a Slurm node), it does the same: train
the run (or reuse a finished one, or resume a stopped one from checkpoints/last.pt), then evaluate it on the
episode files that have no record yet, and write one record each. The missing files are looked up when the
job starts, not when it was submitted, so a job requeued after writing some records does not write them twice.
"""
from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fewshot.errors import EnvironmentFailure, FewshotError, environment_error
from fewshot.sweep.state import PointState, point_folder


@dataclass
class PointTask:
    label: str  # the row it makes in a table: an ablation point, a method
    seed: int
    config: dict
    data: str
    run_dir: str
    results: str
    episode_paths: list[str]  # every file the point needs a record for
    device: str = "auto"
    precision: str | None = None
    method: str | None = None  # the records' method name (default: the config's name)
    extra: dict[str, Any] | None = None  # merged into each record (an ablation names its point)
    threads: int | None = None  # torch threads of the job
    nproc: int = 1  # more than 1: training runs under torchrun with this many processes
    progress: bool | str = False  # the training run's progress output (fewshot.train.progress); jobs are quiet
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def folder(self) -> Path:
        return point_folder(self.run_dir)

    def make_absolute(self) -> None:
        """Absolute paths, for a job that may start in another folder than the command that submitted it."""
        self.data, self.run_dir, self.results = (str(Path(p).absolute()) for p in (self.data, self.run_dir, self.results))
        self.episode_paths = [str(Path(p).absolute()) for p in self.episode_paths]


def group_by_run(tasks: list[PointTask]) -> list[list[int]]:
    """Indices of the tasks that share a run folder (a sweep of eval.head), in order: each group is run by
    one worker or job, which trains the run once (two at once would meet the run folder's lock)."""
    groups: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        groups.setdefault(task.run_dir, []).append(index)
    return list(groups.values())


def run_task(task: PointTask, state: PointState | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Run the point and report it: {"ok", "how", "records": [(setting, "mean +- ci95", path)], "error"}.

    The point's state.json says running while it runs and done or failed at the end; an error of the point
    (bad input, a failing run) is reported, not raised, so the other points of the sweep go on.
    """
    state = state or PointState(task.folder, task.token)
    state.start()
    try:
        outcome = point_outcome(task, log)
    except KeyboardInterrupt:
        state.finish("failed", error="interrupted (Ctrl-C, or the job was cancelled)")
        raise
    state.finish("done" if outcome["ok"] else "failed", **{k: v for k, v in outcome.items() if k != "ok"})
    return outcome


def run_group(tasks: list[PointTask], state: PointState, log: Callable[[str], None] | None = None) -> list[dict]:
    """Points that share one run folder (a sweep of eval.head), one after the other under one state.json.

    The run is trained by the first and reused by the others. The state is done when every point is, else
    failed with the first error; `outcomes` in it holds each point's own, in the group's order. A point whose
    failure stops the sweep (a full disk) stops the group too: the rest are reported failed with it.
    """
    state.start()
    outcomes: list[dict] = []
    try:
        for task in tasks:
            if outcomes and outcomes[-1].get("stop"):
                outcomes.append({**outcomes[-1], "ok": False})
                continue
            outcomes.append(point_outcome(task, log))
    except KeyboardInterrupt:
        state.finish("failed", error="interrupted (Ctrl-C, or the job was cancelled)")
        raise
    failed = [o for o in outcomes if not o["ok"]]
    state.finish("failed" if failed else "done", outcomes=outcomes,
                 **({"error": failed[0]["error"]} if failed else
                    {"how": outcomes[0]["how"], "records": [r for o in outcomes for r in o["records"]]}))
    return outcomes


def point_outcome(task: PointTask, log: Callable[[str], None] | None = None) -> dict:
    """Train (or reuse) and evaluate the point; its error as an outcome, not raised (see run_task)."""
    try:
        how, records = _train_and_evaluate(task, log or (lambda message: None))
    except FewshotError as exc:  # a disk that is full for one point is full for the next: the sweep stops
        return {"ok": False, "error": str(exc), "stop": isinstance(exc, EnvironmentFailure)}
    except OSError as exc:  # writing a record or a checkpoint: the same
        error = environment_error(exc)
        if error is None:
            raise
        return {"ok": False, "error": str(error), "stop": True}
    except Exception as exc:  # noqa: BLE001 - whatever stops the point is its failure, not the sweep's
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"ok": False, "error": f"{type(exc).__name__}: {first}".rstrip(": ")}
    return {"ok": True, "how": how, "records": records}


def _train_and_evaluate(task: PointTask, log: Callable[[str], None]) -> tuple[str, list]:
    from fewshot.points import evaluate_and_write, index_records, missing_files, train_or_reuse
    from fewshot.data.store import Store
    from fewshot.episodes.files import load_episode_file
    from fewshot.results.records import record_summary

    if task.threads:
        import torch

        torch.set_num_threads(task.threads)
    store = Store(task.data)
    files = [load_episode_file(p) for p in task.episode_paths]
    todo = missing_files(task.config, store, files, index_records(task.results))
    if not todo:
        return "records exist", []
    trainer = None
    if task.nproc > 1:
        from fewshot.sweep.torchrun import torchrun_trainer

        trainer = torchrun_trainer(task.nproc, task.folder / "config.json")
    run_dir = Path(task.run_dir)
    how = train_or_reuse(task.config, task.data, run_dir, task.progress, task.device, log, train_fn=trainer)
    # Evaluation runs in this process (on the first GPU, where training used several under torchrun).
    records = evaluate_and_write(run_dir, task.data, todo, task.results, task.device, task.precision,
                                 method=task.method, extra=task.extra, eval_settings=task.config.get("eval"))
    for record in records:
        log(f"  {record['setting']}: {record_summary(record)} -> {record['_path']}")
    return how, [(r["setting"], record_summary(r), r["_path"]) for r in records]
