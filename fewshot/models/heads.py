"""Embedding heads on top of a backbone: identity or a projection MLP, optionally L2-normalised."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError


class EmbeddingHead(nn.Module):
    def __init__(self, in_dim: int, kind: str = "identity", dim: int = 128, hidden: int = 512,
                 normalize: bool = False) -> None:
        super().__init__()
        if kind == "identity":
            self.net = nn.Identity()
            self.out_dim = in_dim
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, dim))
            self.out_dim = dim
        elif kind == "linear":
            self.net = nn.Linear(in_dim, dim)
            self.out_dim = dim
        else:
            raise FewshotError(f"unknown head kind {kind!r}; choose identity, linear or mlp")
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(x)
        return F.normalize(x, dim=-1) if self.normalize else x
