"""Nearest prototype (Snell et al. 2017): each query takes the class of the nearest support mean.

With the default UN features this is exactly the harness's scoring of old (fewshot.evaluate.episodes
score_episodes, sharded under torchrun), ties and all: a record made with this head equals one made before
heads existed.
"""
from __future__ import annotations

import numpy as np
import torch

from fewshot.evaluate import distributed as sharded
from fewshot.evaluate.heads.base import Head
from fewshot.evaluate.heads.registry import register_head


@register_head("nearest_prototype")
class NearestPrototypeHead(Head):
    name = "nearest_prototype"
    CONFIG_KEYS = {**Head.CONFIG_KEYS, "distance": "distance", "batch_episodes": "batch_episodes"}

    def __init__(self, distance: str = "euclidean", batch_episodes: int = 250, norm: str = "default") -> None:
        super().__init__(norm)
        from fewshot.errors import FewshotError

        if distance not in ("euclidean", "cosine"):
            raise FewshotError(f"unknown distance eval.distance={distance!r}; choose euclidean or cosine")
        self.distance = distance
        self.batch_episodes = batch_episodes

    def settings(self) -> dict:
        return {**super().settings(), "distance": self.distance}

    def score(self, cache: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
        return sharded.score_episodes(self.norm(cache), support_rows, query_rows, self.distance,
                                      self.batch_episodes)
