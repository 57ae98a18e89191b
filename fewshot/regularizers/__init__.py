"""Regularizers on output features (training only): CIR."""
from __future__ import annotations

from fewshot.errors import FewshotError
from fewshot.regularizers.cir import ClassInterference


def create_regularizer(config: dict, n_classes: int, dim: int, anchors: bool = False) -> ClassInterference | None:
    """The CIR module configured by `cir.*`, or None when cir.enabled is false.

    `anchors`: the learner can move anchors only (cir.apply_to = "anchors"; the triplet learner)."""
    settings = dict(config["cir"])
    if not settings.pop("enabled"):
        return None
    if settings.get("apply_to", "all") == "anchors" and not anchors:
        raise FewshotError(f"cir.apply_to = 'anchors' is for the triplet (siamese) learner; the {config['learner']} "
                           "learner has no anchors: use cir.apply_to = 'all'")
    return ClassInterference(n_classes, dim, **settings)
