"""The feature transforms of SimpleShot (Wang et al. 2019), applied to cached embeddings before a head scores.

UN: unchanged. L2N: each row divided by its L2 norm. CL2N: the mean feature of the training split subtracted,
then L2N (the mean comes from `fit`, the embeddings of the run's training split).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError

NORMS = ("UN", "L2N", "CL2N")


class FeatureNorm:
    def __init__(self, kind: str) -> None:
        if kind not in NORMS:
            raise FewshotError(f"unknown feature normalisation eval.head_norm={kind!r}; choose one of: "
                               f"{', '.join(NORMS)} (or default, the head's own)")
        self.kind = kind
        self.mean: torch.Tensor | None = None

    @property
    def needs_train_split(self) -> bool:
        return self.kind == "CL2N"

    def fit(self, train_features: torch.Tensor) -> None:
        """Keep the mean feature of the training split (float64 sum: 80k rows of float32 lose digits)."""
        if len(train_features) == 0:
            raise FewshotError("the training split has no images to take the CL2N mean feature from")
        self.mean = train_features.double().mean(dim=0).float()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "UN":
            return features
        if self.kind == "CL2N":
            if self.mean is None:
                raise RuntimeError("CL2N needs the training split's mean: call fit(train_features) first")
            features = features - self.mean.to(features.device)
        return F.normalize(features, dim=-1)
