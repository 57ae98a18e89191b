"""SimpleShot (Wang et al. 2019): nearest centroid, Euclidean, on transformed features; CL2N by default.

CL2N subtracts the mean feature of the training split and L2-normalises (the paper's best); `eval.head_norm`
chooses UN or L2N instead. The centroid is the mean of the transformed support features, not normalised
again, as in the paper's code.
"""
from __future__ import annotations

from fewshot.evaluate.heads.nearest_prototype import NearestPrototypeHead
from fewshot.evaluate.heads.registry import register_head


@register_head("simpleshot")
class SimpleShotHead(NearestPrototypeHead):
    name = "simpleshot"
    default_norm = "CL2N"
    CONFIG_KEYS = {"norm": "head_norm", "batch_episodes": "batch_episodes"}

    def __init__(self, batch_episodes: int = 250, norm: str = "default") -> None:
        super().__init__("euclidean", batch_episodes, norm)
