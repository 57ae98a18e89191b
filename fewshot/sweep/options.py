"""Where and with what resources the points of a sweep run: the `[executor]` table of a spec, under the CLI."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from fewshot.errors import FewshotError

EXECUTOR_NAMES = ("local", "slurm", "submitit-local")
DEFAULT_TIME_MINUTES = 240  # submitit's own default (5 minutes) would stop any real training run


@dataclass(frozen=True)
class ExecutorOptions:
    """`name`: local (this machine's process pool), slurm (one job array through submitit) or submitit-local
    (submitit's local executor: every point in its own subprocess, pickled and run as Slurm would).
    The other fields are a job's resources; `local` uses only `jobs`."""

    name: str = "local"
    jobs: int = 1
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    time_minutes: int = DEFAULT_TIME_MINUTES
    array_parallelism: int = 256
    slurm_extra: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load, venv)
    max_requeues: int = 3  # times a job may reach its time limit and requeue itself
    wait: bool = False  # slurm/submitit-local: wait for the jobs, then table (local always waits)

    @property
    def submits(self) -> bool:
        """Whether points run as submitted jobs (submitit), not in this process's pool."""
        return self.name != "local"


TABLE_KEYS = {"name": str, "jobs": int, "partition": str, "gpus_per_job": int, "cpus_per_job": int, "mem": None,
              "time": None, "array_parallelism": int, "slurm_extra": dict, "setup": list, "max_requeues": int,
              "wait": bool}


def parse_mem_gb(value: Any, where: str = "--mem") -> float:
    """GB from 32, 32.5, "32", "32G", "32GB" or "512M"/"512MB"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([gGmM]?)[bB]?\s*", str(value))
    if not match or float(match[1]) <= 0:
        raise FewshotError(f"{where} {value!r} is not a memory size; write GB like 32, or 32G, or 512M")
    amount = float(match[1])
    return amount / 1024 if match[2] in ("m", "M") else amount


def parse_minutes(value: Any, where: str = "--time") -> int:
    """Whole minutes (rounded up) from Slurm's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not match:
        raise FewshotError(f"{where} {value!r} is not a time; write minutes (240) or Slurm's D-HH:MM:SS (1-12:00:00)")
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + sum(p * s for p, s in zip(parts, (3600, 60, 1)))
    elif len(parts) == 3:  # HH:MM:SS
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:  # MM or MM:SS
        seconds = parts[0] * 60 + (parts[1] if len(parts) > 1 else 0)
    if seconds <= 0:
        raise FewshotError(f"{where} {value!r} is no time at all; give the job's time limit")
    return -(-seconds // 60)


def parse_extra(items: list[str] | dict | None, where: str = "--slurm-extra") -> dict[str, Any]:
    """sbatch options submitit has no name for: KEY=VALUE (or a bare KEY for a flag such as exclusive)."""
    if isinstance(items, dict):
        return {str(k): v for k, v in items.items()}
    extra: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise FewshotError(f"{where} {item!r} is not KEY=VALUE (e.g. account=myproject, or a bare flag: exclusive)")
        extra[key] = value.strip() if sep else True
    return extra


def from_table(table: Any, where: str) -> dict[str, Any]:
    """The `[executor]` table of a spec, checked, as ExecutorOptions fields."""
    if not isinstance(table, dict):
        raise FewshotError(f"{where}: [executor] must be a table, e.g. [executor] name = \"slurm\"")
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise FewshotError(f"{where}: unknown [executor] key {unknown[0]!r}; use {', '.join(sorted(TABLE_KEYS))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = TABLE_KEYS[key]
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise FewshotError(f"{where}: [executor] {key} must be a whole number, got {value!r}")
        if kind is not None and kind is not int and not isinstance(value, kind):
            raise FewshotError(f"{where}: [executor] {key} must be a {kind.__name__}, got {value!r}")
        if key == "mem":
            values["mem_gb"] = parse_mem_gb(value, f"{where}: [executor] mem")
        elif key == "time":
            values["time_minutes"] = parse_minutes(value, f"{where}: [executor] time")
        elif key == "slurm_extra":
            values["slurm_extra"] = parse_extra(value)
        elif key == "setup":
            if not all(isinstance(line, str) for line in value):
                raise FewshotError(f"{where}: [executor] setup must list shell lines as strings")
            values["setup"] = list(value)
        else:
            values[key] = value
    return values


def resolve(spec_table: dict[str, Any] | None, cli: dict[str, Any]) -> ExecutorOptions:
    """The spec's `[executor]` values (already checked by from_table) with every CLI value given (not None) over
    them; --slurm-extra adds to the spec's keys."""
    values = dict(spec_table or {})
    for key, value in cli.items():
        if value is None:
            continue
        if key == "slurm_extra":
            values["slurm_extra"] = {**values.get("slurm_extra", {}), **value}
        else:
            values[key] = value
    known = {f.name for f in fields(ExecutorOptions)}
    options = replace(ExecutorOptions(), **{k: v for k, v in values.items() if k in known})
    check(options)
    return options


def check(options: ExecutorOptions) -> None:
    if options.name not in EXECUTOR_NAMES:
        raise FewshotError(f"executor {options.name!r} is unknown; choose one of {', '.join(EXECUTOR_NAMES)}")
    for name in ("jobs", "array_parallelism", "time_minutes"):
        if getattr(options, name) < 1:
            raise FewshotError(f"executor {name.replace('_', '-')} must be 1 or more, got {getattr(options, name)}")
    if options.cpus_per_job is not None and options.cpus_per_job < 1:
        raise FewshotError(f"--cpus-per-job must be 1 or more, got {options.cpus_per_job}")
    if options.gpus_per_job < 0:
        raise FewshotError(f"--gpus-per-job must be 0 or more, got {options.gpus_per_job}")
    if options.submits:
        import importlib.util

        if importlib.util.find_spec("submitit") is None:
            raise FewshotError(f"--executor {options.name} needs submitit, which is not installed: "
                               "pip install 'fewshot[cluster]'")
    if options.name == "local" and options.gpus_per_job > 1:
        raise FewshotError("--gpus-per-job N>1 runs a point with torchrun inside a submitted job; use --executor "
                           "slurm (or submitit-local), or train one run with `fewshot train --nproc N`")
