"""The head interface: score N-way K-shot episodes from one split's cached embeddings (embed once, score all).

`score(cache, support_rows, query_rows)` takes the cache (M, D) and row indices into it, support (E, N, K)
and query (E, N, Q), class-major (class n of an episode is label n), and returns each episode's accuracy (E,)
as float64. A head that needs statistics of the training split (SimpleShot's mean feature) says so with
`needs_train_split`, and is given that split's embeddings through `fit_split` before it scores.
"""
from __future__ import annotations

import numpy as np
import torch

from fewshot.evaluate.heads.features import FeatureNorm


class Head:
    name = ""
    default_norm = "UN"
    # option name -> the `eval.*` config key it is read from (head_from_config)
    CONFIG_KEYS: dict[str, str] = {"norm": "head_norm"}

    def __init__(self, norm: str = "default") -> None:
        self.norm = FeatureNorm(self.default_norm if norm == "default" else norm)

    @property
    def needs_train_split(self) -> bool:
        return self.norm.needs_train_split

    def fit_split(self, train_features: torch.Tensor) -> None:
        self.norm.fit(train_features)

    def settings(self) -> dict:
        """What a record says about the head: its name and every setting that changes its answer."""
        return {"name": self.name, "norm": self.norm.kind}

    def label(self) -> str:
        """The name, with every setting that differs from the head's defaults: logistic(C=0.1)."""
        defaults = type(self)().settings()
        changed = [f"{k}={v}" for k, v in self.settings().items() if k != "name" and defaults.get(k) != v]
        return f"{self.name}({', '.join(changed)})" if changed else self.name

    def describe(self) -> dict:
        """What a record keeps: settings() and label()."""
        return {**self.settings(), "label": self.label()}

    def score(self, cache: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def episode_targets(ways: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels 0..ways-1, each repeated `count` times: the class-major order of support and query rows."""
    return torch.arange(ways, device=device).repeat_interleave(count)


def gather(cache: torch.Tensor, rows: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Embeddings (stop - start, N * K, D) of episodes [start, stop) of `rows` (E, N, K)."""
    block = torch.from_numpy(np.ascontiguousarray(rows[start:stop], dtype=np.int64))
    count, ways, per_class = block.shape
    return cache[block.reshape(-1).to(cache.device)].reshape(count, ways * per_class, -1)
