"""Cross-entropy with label smoothing (Szegedy et al. 2016): targets (1 - eps) onehot_y + eps / K.

loss = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k), averaged over the batch; eps = 0 is plain
cross-entropy. Equals torch's F.cross_entropy(logits, y, label_smoothing=eps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError
from fewshot.losses.registry import register_loss


@register_loss("label_smoothing")
@register_loss("cross_entropy")
class LabelSmoothingCrossEntropy(nn.Module):
    def __init__(self, smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise FewshotError(f"loss.smoothing = {smoothing} must be in [0, 1)")
        self.smoothing = float(smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of logits (B, K) against integer labels (B,)."""
        log_probs = F.log_softmax(logits.float(), dim=-1)
        nll = -log_probs.gather(1, labels[:, None]).squeeze(1)
        uniform = -log_probs.mean(dim=-1)
        return ((1.0 - self.smoothing) * nll + self.smoothing * uniform).mean()
