"""Prototypical loss (Snell et al. 2017): cross-entropy over negative squared distances to class prototypes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.losses.registry import register_loss


def prototypes(support: torch.Tensor, ways: int, shots: int) -> torch.Tensor:
    """Mean of each class's support embeddings; support is (N*K, D) class-major."""
    return support.reshape(ways, shots, -1).mean(dim=1)


def prototype_logits(query: torch.Tensor, protos: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    if distance == "euclidean":
        return -torch.cdist(query.float(), protos.float()).pow(2)
    if distance == "cosine":
        return F.normalize(query.float(), dim=-1) @ F.normalize(protos.float(), dim=-1).T * 10.0
    raise ValueError(f"unknown distance {distance!r}; choose euclidean or cosine")


def prototypical_loss(embeddings: torch.Tensor, ways: int, shots: int, queries: int,
                      distance: str = "euclidean") -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy of one episode laid out as support (N*K) then query (N*Q), class-major."""
    support, query = embeddings[: ways * shots], embeddings[ways * shots:]
    logits = prototype_logits(query, prototypes(support, ways, shots), distance)
    targets = torch.arange(ways, device=embeddings.device).repeat_interleave(queries)
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return loss, accuracy


@register_loss("prototypical")
class PrototypicalLoss(nn.Module):
    """`prototypical_loss` as a registered loss: the mean cross-entropy of one episode's queries."""

    def __init__(self, distance: str = "euclidean") -> None:
        super().__init__()
        self.distance = distance

    def forward(self, embeddings: torch.Tensor, ways: int, shots: int, queries: int) -> torch.Tensor:
        return prototypical_loss(embeddings, ways, shots, queries, self.distance)[0]
