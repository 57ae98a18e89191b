"""Executors by name: `create_executor(options, folder)`; each module of fewshot/sweep/executors registers its own."""
from __future__ import annotations

from pathlib import Path

from fewshot.registry import Registry
from fewshot.sweep.options import ExecutorOptions

EXECUTORS: Registry = Registry("executor", "fewshot.sweep.executors")


def create_executor(options: ExecutorOptions, folder: str | Path):
    """The executor `options.name` names; `folder` is where it may keep its own files (submitit's logs)."""
    return EXECUTORS.get(options.name)(options, Path(folder))
