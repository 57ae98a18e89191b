"""`slurm` and `submitit-local`: every point a submitit job, all of them one job array.

`slurm` submits through submitit's AutoExecutor to Slurm (sbatch); `submitit-local` through submitit's local
executor, which pickles each job and runs it in its own subprocess as a Slurm node would (for trying a sweep
on one machine, and for the tests). Each job is a fewshot.sweep.job.PointJob. The command returns once the
jobs are submitted, or, with `wait`, once they have ended, reporting each point from its state.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from fewshot.errors import FewshotError
from fewshot.sweep.options import ExecutorOptions
from fewshot.sweep.registry import EXECUTORS
from fewshot.sweep.state import STATE, read_json, write_submission
from fewshot.sweep.task import PointTask, group_by_run

EXTRA = "fewshot[cluster]"


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise FewshotError(f"this executor needs submitit, which is not installed: pip install '{EXTRA}'") from None
    return submitit


class SubmititJobs:
    """One job array of PointJobs on `cluster` (slurm or local), with the options' resources."""

    cluster = "slurm"
    poll_seconds = 30.0

    def __init__(self, options: ExecutorOptions, folder: Path) -> None:
        self.options = options
        self.folder = Path(folder)
        self.waits = options.wait

    def make_executor(self, name: str):
        """submitit's AutoExecutor with every resource set (the tests read its sbatch file)."""
        submitit = import_submitit()
        o = self.options
        try:
            executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster,
                                             **{f"{self.cluster}_max_num_timeout": o.max_requeues})
        except RuntimeError as exc:  # SlurmExecutor: no srun on PATH
            raise FewshotError(f"--executor slurm: {exc} Submit from a node of the cluster, or try the sweep here "
                               "with --executor submitit-local") from None
        parameters = {"name": name, "timeout_min": o.time_minutes, "mem_gb": o.mem_gb, "cpus_per_task": o.cpus_per_job,
                      "gpus_per_node": o.gpus_per_job or None, "nodes": 1, "tasks_per_node": 1}
        if self.cluster == "slurm":
            parameters.update(slurm_partition=o.partition, slurm_array_parallelism=o.array_parallelism,
                              slurm_additional_parameters=dict(o.slurm_extra) or None, slurm_setup=list(o.setup) or None)
        try:
            executor.update_parameters(**parameters)
        except (ValueError, NameError) as exc:  # a value sbatch's template refuses
            raise FewshotError(f"executor options: {str(exc).splitlines()[0]}") from None
        return executor

    def launch(self, tasks: list[PointTask], log: Callable[[str], None],
               name: str = "fewshot") -> Iterator[tuple[PointTask, dict]]:
        if not tasks:
            return
        from fewshot.sweep.job import PointJob

        executor = self.make_executor(name)
        # One job per run folder: the points of a sweep of eval.head share one run, which one job trains
        # once and evaluates with each head in turn (two jobs would meet the run folder's lock).
        for task in tasks:
            task.make_absolute()
            task.nproc = max(1, self.options.gpus_per_job)
            task.threads = task.threads or self.options.cpus_per_job
        groups = [[tasks[index] for index in group] for group in group_by_run(tasks)]
        for group in groups:
            for task in group[1:]:
                task.token = group[0].token  # one state.json for the folder, read as each point's
            write_submission(group[0].folder, group[0].token, self.options.name)  # before the job can start
        jobs = []
        try:
            with executor.batch():
                for group in groups:
                    jobs.append(executor.submit(PointJob(group)))
        except Exception as exc:  # noqa: BLE001 - sbatch refused: say why, on one line
            lines = str(exc).strip().splitlines()
            raise FewshotError(f"submitting {len(tasks)} jobs failed: {lines[-1] if lines else type(exc).__name__}") from None
        for group, job in zip(groups, jobs):
            pid = int(job.job_id) if self.cluster == "local" else None  # the local job is its controller process
            write_submission(group[0].folder, group[0].token, self.options.name, job.job_id, str(job.paths.stdout),
                             str(job.paths.stderr), pid=pid)
        first = jobs[0].job_id.split("_")[0]
        shared = f" ({len(jobs)} jobs: points of one run share its job)" if len(jobs) != len(tasks) else ""
        log(f"submitted {len(tasks)} point(s) as {'job array ' + first if '_' in jobs[0].job_id else 'job(s) ' + ', '.join(j.job_id for j in jobs)}"
            f"{shared}; logs in {self.folder.absolute()}")
        if not self.waits:
            return
        submitit = import_submitit()
        by_id = {job.job_id: group for group, job in zip(groups, jobs)}
        for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_seconds):
            group = by_id[job.job_id]
            for index, task in enumerate(group):
                yield task, self._outcome(task, job, index)

    @staticmethod
    def _outcome(task: PointTask, job, index: int = 0) -> dict:
        """What the job said in its state.json (never its result pickle): point `index` of its run folder's."""
        state = read_json(task.folder / STATE) or {}
        outcomes = state.get("outcomes") if state.get("token") == task.token else None
        if isinstance(outcomes, list) and index < len(outcomes) and isinstance(outcomes[index], dict):
            own = outcomes[index]
            if own.get("ok"):
                return {"ok": True, "how": own.get("how"), "records": own.get("records", [])}
            return {"ok": False, "error": own.get("error"), "log": state.get("stderr")}
        if state.get("token") == task.token and state.get("state") == "done":
            return {"ok": True, "how": state.get("how"), "records": state.get("records", [])}
        if state.get("token") == task.token and state.get("state") == "failed":
            return {"ok": False, "error": state.get("error"), "log": state.get("stderr")}
        return {"ok": False, "error": f"job {job.job_id} ended without reporting (killed?); see {job.paths.stderr}",
                "log": str(job.paths.stderr)}


@EXECUTORS.register("slurm")
class SlurmJobs(SubmititJobs):
    cluster = "slurm"


@EXECUTORS.register("submitit-local")
class LocalJobs(SubmititJobs):
    """submitit's LocalExecutor: all points at once, each in its own subprocess (no array_parallelism)."""

    cluster = "local"
    poll_seconds = 0.5
