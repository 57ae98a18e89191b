"""The executor options `fewshot ablate` and `fewshot bench` share (fewshot/sweep/options.py, docs/cluster.md)."""
from __future__ import annotations

import argparse

from fewshot.commands.common import positive_int
from fewshot.errors import FewshotError
from fewshot.sweep.options import EXECUTOR_NAMES, ExecutorOptions, parse_extra, parse_mem_gb, parse_minutes, resolve


def _checked(parse):
    def convert(text: str):
        try:
            return parse(text)
        except FewshotError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def add_executor_options(parser: argparse.ArgumentParser, spec_note: str = "") -> None:
    group = parser.add_argument_group(
        "where the points run", "local: this machine's process pool (--jobs). slurm: one job array through "
        "submitit (needs fewshot[cluster]); each job trains or resumes one point and writes its records. "
        "submitit-local: submitit's local executor, each point its own subprocess as on a node. "
        f"See docs/cluster.md.{spec_note}")
    group.add_argument("--executor", choices=EXECUTOR_NAMES, default=None, help="local (default), slurm, submitit-local")
    group.add_argument("--slurm-partition", dest="partition", help="Slurm partition")
    group.add_argument("--gpus-per-job", type=int, default=None, metavar="N",
                       help="GPUs of each job; N>1 trains the point with torchrun on the N GPUs")
    group.add_argument("--cpus-per-job", type=positive_int, default=None, metavar="N",
                       help="CPUs of each job (also its torch threads)")
    group.add_argument("--mem", type=_checked(parse_mem_gb), default=None, dest="mem_gb", metavar="SIZE",
                       help="memory of each job: GB (32) or 32G, 512M")
    group.add_argument("--time", type=_checked(parse_minutes), default=None, dest="time_minutes", metavar="LIMIT",
                       help="time limit of each job: minutes or D-HH:MM:SS (default 240 minutes); at the limit a job "
                            "requeues itself and resumes from its last checkpoint")
    group.add_argument("--array-parallelism", type=positive_int, default=None, metavar="N",
                       help="jobs of the array running at once (default 256)")
    group.add_argument("--slurm-extra", action="append", default=None, metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. account=proj, qos=high, constraint=a100 (repeatable)")
    group.add_argument("--wait", action="store_true", default=None,
                       help="slurm / submitit-local: wait for the jobs to end, then print the table")


def executor_options(args: argparse.Namespace, spec_table: dict | None = None, jobs: int | None = None) -> ExecutorOptions:
    """The spec's [executor] values under whatever the command line gives."""
    return resolve(spec_table, {
        "name": args.executor, "jobs": jobs, "partition": args.partition, "gpus_per_job": args.gpus_per_job,
        "cpus_per_job": args.cpus_per_job, "mem_gb": args.mem_gb, "time_minutes": args.time_minutes,
        "array_parallelism": args.array_parallelism,
        "slurm_extra": parse_extra(args.slurm_extra) if args.slurm_extra else None, "wait": args.wait})


def format_statuses(rows: list) -> str:
    """One line a point: state, name, job and detail; a failed point's error and log on the lines below."""
    width = max((len(name) for name, _ in rows), default=0)
    lines = []
    for name, status in rows:
        job = f"job {status.job_id}: " if status.job_id and status.state != "done" else ""
        lines.append(f"  {status.state:<8} {name:<{width}}  {job}{status.detail}".rstrip())
        if status.state == "failed":
            if status.error:
                lines.append(f"           error: {status.error}")
            if status.log:
                lines.append(f"           log:   {status.log}")
    return "\n".join(lines) + ("\n" if lines else "")
