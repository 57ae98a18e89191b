"""Triplet margin loss on P x K batches (Schroff et al. 2015; Hermans et al. 2017, "In Defense of the Triplet Loss").

For an anchor a, a positive p (same class, p != a) and a negative n (another class) the triplet's loss is
relu(d(a,p) - d(a,n) + margin), or softplus(d(a,p) - d(a,n) + margin) with `soft_margin` (Hermans's soft
margin is this with margin = 0). Distances are Euclidean or cosine (1 - cos).

Mining (all vectorised over the batch's distance matrix):
- "batch_hard": one triplet an anchor: its farthest positive and nearest negative (Hermans).
- "semi_hard":  every triplet with 0 < d(a,n) - d(a,p) <= margin (pytorch-metric-learning's
                TripletMarginMiner type "semihard").
- "all":        every valid triplet.
Reduction: "nonzero" averages over the triplets whose loss is > 0 (pytorch-metric-learning's default
AvgNonZeroReducer, so values equal its TripletMarginLoss on the same triplets; 0 when none is active);
"mean" averages over all mined triplets (Hermans's batch-hard average over anchors).
global_mining: under torch.distributed, anchors are this process's rows and their positives and negatives
come from every process's batch (all-gathered, gradients flow back to their owners); no effect in one process.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError
from fewshot.losses.registry import register_loss
from fewshot.distributed import all_gather_cat, is_distributed, rank

DISTANCES = ("euclidean", "cosine")
MININGS = ("batch_hard", "semi_hard", "all")
REDUCTIONS = ("nonzero", "mean")


@register_loss("triplet")
class TripletMarginLoss(nn.Module):
    def __init__(self, margin: float = 0.2, distance: str = "euclidean", mining: str = "batch_hard",
                 soft_margin: bool = False, triplet_reduction: str = "nonzero", global_mining: bool = False) -> None:
        super().__init__()
        for key, value, choices in (("distance", distance, DISTANCES), ("mining", mining, MININGS),
                                    ("triplet_reduction", triplet_reduction, REDUCTIONS)):
            if value not in choices:
                raise FewshotError(f"loss.{key} = {value!r} is not one of {', '.join(choices)}")
        self.margin, self.distance, self.mining = float(margin), distance, mining
        self.soft_margin, self.reduction = bool(soft_margin), triplet_reduction
        self.global_mining = bool(global_mining)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                references: torch.Tensor | None = None) -> torch.Tensor:
        """Mean triplet loss of a batch of embeddings (B, D) with integer labels (B,).

        `references` (B, D), the same samples embedded otherwise (CIR on anchors only: the clean embeddings),
        supplies the positives and negatives; the anchors stay `embeddings`. Row i is never its own positive."""
        embeddings = embeddings.float()
        candidates = embeddings if references is None else references.float()
        # Candidates for positives and negatives: this batch, or every process's (rows `first`... are ours).
        others, other_labels, first = candidates, labels, 0
        if self.global_mining and is_distributed():
            others, other_labels, first = all_gather_cat(candidates), all_gather_cat(labels), rank() * len(labels)
        if self.distance == "euclidean":
            dist = torch.cdist(embeddings, others)
        else:
            unit = F.normalize(embeddings, dim=-1)
            dist = 1.0 - unit @ (unit if others is embeddings else F.normalize(others, dim=-1)).T
        same = labels[:, None] == other_labels[None, :]
        itself = (torch.arange(len(labels), device=labels.device)[:, None] + first
                  == torch.arange(len(other_labels), device=labels.device)[None, :])
        positive = same & ~itself
        negative = ~same
        if self.mining == "batch_hard":
            has_both = positive.any(1) & negative.any(1)
            anchor_positive = dist.masked_fill(~positive, float("-inf")).amax(1)[has_both]
            anchor_negative = dist.masked_fill(~negative, float("inf")).amin(1)[has_both]
        else:
            # Triplet (a, p, n) lives at [a, p, n] of a (B, B, B) grid.
            valid = positive[:, :, None] & negative[:, None, :]
            ap_grid, an_grid = dist[:, :, None], dist[:, None, :]
            if self.mining == "semi_hard":
                gap = (an_grid - ap_grid).detach()
                valid = valid & (gap > 0) & (gap <= self.margin)
            anchor_positive = ap_grid.expand_as(valid)[valid]
            anchor_negative = an_grid.expand_as(valid)[valid]
        violation = anchor_positive - anchor_negative + self.margin
        losses = F.softplus(violation) if self.soft_margin else F.relu(violation)
        if self.reduction == "nonzero":
            losses = losses[losses > 0]
        # An empty selection gives 0, still attached to the graph so backward() works.
        return losses.mean() if losses.numel() else losses.sum()
