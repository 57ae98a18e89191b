"""A classifier baseline: a linear head over the training classes with cross-entropy or label smoothing.

P x K batches; optional CIR moves the features before the linear head. The linear head only trains the
embedding: `embed` (and so evaluation, by nearest prototype) uses the backbone and embedding head alone.
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.learners.base import Batch, Learner
from fewshot.learners.registry import register_learner
from fewshot.losses import create_loss
from fewshot.regularizers import create_regularizer


@register_learner("classifier")
class ClassifierLearner(Learner):
    batch_kind = "pk"

    def __init__(self, config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int) -> None:
        super().__init__(config, in_channels, image_size, n_classes)
        self.classifier = nn.Linear(self.embedding_dim, n_classes)
        self.cross_entropy = create_loss(config, allowed=("cross_entropy", "label_smoothing"), learner="classifier")
        self.cir = create_regularizer(config, n_classes, self.embedding_dim)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.features(batch.images)
        clean = self.normalized(features)
        loss = self.cross_entropy(self.classifier(self.finish(features, batch.labels)), batch.labels)
        with torch.no_grad():
            accuracy = (self.classifier(clean).argmax(1) == batch.labels).float().mean()
        return loss, {"train_acc": accuracy}
