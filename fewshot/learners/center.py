"""Center contrastive learning (Cai et al. 2023): features against a bank of class centers, optional CIR.

P x K batches; the bank has one center per training class (labels are global class indices) and lives in
the loss module, so `state_dict()` and checkpoints hold it. Evaluation ignores the bank: nearest prototype
over the embedding, like every learner.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.learners.base import Batch, Learner
from fewshot.learners.registry import register_learner
from fewshot.losses import create_loss
from fewshot.regularizers import create_regularizer


@register_learner("center")
class CenterLearner(Learner):
    batch_kind = "pk"

    def __init__(self, config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int) -> None:
        super().__init__(config, in_channels, image_size, n_classes)
        self.center_loss = create_loss(config, allowed=("center_contrastive",), learner="center",
                                       n_classes=n_classes, dim=self.embedding_dim)
        self.cir = create_regularizer(config, n_classes, self.embedding_dim)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        features = self.features(batch.images)
        with torch.no_grad():  # nearest-center accuracy of the clean features, before an EMA bank moves
            cos = F.normalize(features.float(), dim=-1) @ F.normalize(self.center_loss.centers.float(), dim=-1).T
            accuracy = (cos.argmax(1) == batch.labels).float().mean()
        return self.center_loss(self.finish(features, batch.labels), batch.labels), {"train_acc": accuracy}

    def parameter_groups(self, lr: float) -> list[dict]:
        """Learned centers train at lr * loss.center_lr_scale (proxy methods often give proxies a larger rate)."""
        centers = self.center_loss.centers
        rest = [p for p in self.parameters() if p.requires_grad and p is not centers]
        if not isinstance(centers, nn.Parameter):
            return [{"params": rest}]
        return [{"params": rest}, {"params": [centers], "lr": lr * self.config["loss"]["center_lr_scale"]}]
