"""Regularizers on output features (training only): CIR."""
from __future__ import annotations

from fewshot.regularizers.cir import ClassInterference


def create_regularizer(config: dict, n_classes: int, dim: int) -> ClassInterference | None:
    """The CIR module configured by `cir.*`, or None when cir.enabled is false."""
    settings = dict(config["cir"])
    if not settings.pop("enabled"):
        return None
    return ClassInterference(n_classes, dim, **settings)
