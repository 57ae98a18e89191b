"""Siamese network (Hermans et al. 2017): a triplet loss on P x K batches, optional CIR on the embeddings."""
from __future__ import annotations

import torch

from fewshot.learners.base import Batch, Learner
from fewshot.learners.registry import register_learner
from fewshot.losses import create_loss
from fewshot.regularizers import create_regularizer


@register_learner("siamese")
class SiameseLearner(Learner):
    batch_kind = "pk"

    def __init__(self, config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int) -> None:
        super().__init__(config, in_channels, image_size, n_classes)
        self.triplet = create_loss(config, allowed=("triplet",), learner="siamese")
        self.cir = create_regularizer(config, n_classes, self.embedding_dim, anchors=True)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.features(batch.images)
        clean = self.normalized(features)
        moved = self.finish(features, batch.labels)
        if self.cir is not None and self.cir.apply_to == "anchors":
            # Moved anchors against clean positives and negatives (cir.apply_to, fewshot/regularizers/cir.py).
            loss = self.triplet(moved, batch.labels, references=clean)
        else:
            loss = self.triplet(moved, batch.labels)
        return loss, {"train_acc": leave_one_out_accuracy(clean.detach(), batch.labels)}


def leave_one_out_accuracy(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How often an image's nearest other image in the batch shares its class (a cheap training signal)."""
    dist = torch.cdist(embeddings.float(), embeddings.float())
    dist.fill_diagonal_(float("inf"))
    return (labels[dist.argmin(1)] == labels).float().mean()
