"""Prototypical networks: episodic training, nearest-prototype evaluation."""
from __future__ import annotations

import torch

from fewshot.learners.base import Batch, Learner
from fewshot.learners.registry import register_learner
from fewshot.losses import check_loss_name
from fewshot.losses.prototypical import prototypical_loss


@register_learner("prototypical")
class PrototypicalLearner(Learner):
    batch_kind = "episode"

    def __init__(self, config: dict, **shape) -> None:
        check_loss_name(config, ("prototypical",), "prototypical")  # it computes its loss itself
        super().__init__(config, **shape)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embeddings = self.embed(batch.images)
        loss, accuracy = prototypical_loss(
            embeddings, batch.ways, batch.shots, batch.queries, self.config["loss"]["distance"]
        )
        return loss, {"train_acc": accuracy.detach()}
