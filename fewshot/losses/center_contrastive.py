"""Center contrastive loss (Cai, Xiong, Tian 2023, arXiv 2308.00458): a bank of class centers as proxies.

Features x and centers c_k are L2-normalised. Variant "margin" (the form of public re-implementations):

    L = -log[ exp(s (c_y.x - m) + 2 lambda c_y.x) / (exp(s (c_y.x - m)) + sum_{j != y} exp(s c_j.x)) ]
      = CE(s (cos - m onehot_y), y) - 2 lambda c_y.x

i.e. a CosFace-style margin softmax over the centers (lambda = 0 is exactly that) plus a pull of x towards its
own center: for unit vectors 2 - 2 c_y.x = |x - c_y|^2, so the lambda term is a center loss up to a constant.
Variant "temperature": CE(cos / tau, y) - 2 lambda c_y.x (no margin, no scale s).

Centers are learned by gradient (`center_update = "gradient"`, an nn.Parameter initialised to random unit
vectors) or follow an exponential moving average (`"ema"`, a buffer without gradient): after each training
forward, c_k <- normalise(momentum c_k + (1 - momentum) mean of the batch's unit features of class k), from
zero, so a class's first batch sets its center to its mean direction (unseen classes give logit 0).
Either way the bank is in `state_dict()`, so checkpoints hold it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError
from fewshot.losses.registry import register_loss
from fewshot.distributed import all_reduce_sum


@register_loss("center_contrastive")
class CenterContrastiveLoss(nn.Module):
    def __init__(self, n_classes: int, dim: int, scale: float = 64.0, center_margin: float = 0.2,
                 center_lambda: float = 1.0, variant: str = "margin", temperature: float = 0.1,
                 center_update: str = "gradient", center_momentum: float = 0.9) -> None:
        super().__init__()
        if variant not in ("margin", "temperature"):
            raise FewshotError(f"loss.variant = {variant!r} is not margin or temperature")
        if center_update not in ("gradient", "ema"):
            raise FewshotError(f"loss.center_update = {center_update!r} is not gradient or ema")
        if not 0.0 <= center_momentum < 1.0:
            raise FewshotError(f"loss.center_momentum = {center_momentum} must be in [0, 1)")
        self.scale, self.margin, self.center_lambda = float(scale), float(center_margin), float(center_lambda)
        self.variant, self.temperature = variant, float(temperature)
        self.center_update, self.momentum = center_update, float(center_momentum)
        if center_update == "gradient":
            self.centers = nn.Parameter(F.normalize(torch.randn(n_classes, dim), dim=1))
        else:
            self.register_buffer("centers", torch.zeros(n_classes, dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of features (B, D) whose labels (B,) index the center bank."""
        x = F.normalize(features.float(), dim=-1)
        cos = x @ F.normalize(self.centers.float(), dim=-1).T
        own = cos.gather(1, labels[:, None]).squeeze(1)
        if self.variant == "margin":
            logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))
        else:
            logits = cos / self.temperature
        loss = F.cross_entropy(logits, labels) - 2.0 * self.center_lambda * own.mean()
        if self.center_update == "ema" and self.training:
            self._follow(x.detach(), labels)
        return loss

    @torch.no_grad()
    def _follow(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        sums = torch.zeros_like(self.centers).index_add_(0, labels, x.to(self.centers.dtype))
        counts = torch.bincount(labels, minlength=len(self.centers))
        # Under torch.distributed the bank follows every process's batch, so all ranks hold the same centers.
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        seen = counts > 0
        means = sums[seen] / counts[seen, None]
        self.centers[seen] = F.normalize(self.momentum * self.centers[seen] + (1 - self.momentum) * means, dim=1)
