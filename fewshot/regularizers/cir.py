"""Class Interference Regularization (Munjal, Amin, Galasso, BMVC 2020, arXiv 2009.02396).

CIR "perturbs the output features by randomly moving them towards the average embeddings of the negative
classes", at training time only: with probability p a sample, f_i' = f_i + alpha (mu_j - f_i), where mu_j is
the mean feature of a class j != y_i. It is the feature-space counterpart of label smoothing. No code was
published; every uncertain choice is a switch (config `cir.*`):

- p: probability that a sample is moved.        alpha: step towards the negative mean (1 = onto it).
- alpha_random: draw each sample's alpha from U(0, alpha) instead of using alpha itself.
- negative: "random" (a class drawn uniformly among the available other classes) or "mean" (the mean of all
  available negative class means).
- means: "batch" (class means of this batch; the available classes are the batch's) or "memory" (a running
  memory of class means, n_classes rows, updated from each batch with memory_momentum; the available classes
  are every class seen so far). The memory is a buffer, so it is in `state_dict()` and in checkpoints.
- grad_through_means: let gradients flow through mu (default off: the means are constants).
- position: "before_norm" moves the features as given; "after_norm" moves their directions: means are taken
  over unit vectors, the moved vector is renormalised and given back its original length (unit features stay
  unit, so losses that expect unit vectors get them).
- global_batch: under torch.distributed, take batch class means over all processes' batches (no effect in a
  single process).
- apply_to (triplet/siamese learner only): "all" moves every sample of the batch, so anchors, positives and
  negatives are all perturbed; "anchors" moves only the anchors: each triplet compares a moved anchor with
  clean positives and negatives (the paper does not say which; its figure perturbs the sample being
  classified). The module moves what it is given; the learner chooses what to give it.

Randomness comes from torch's global RNG, which training checkpoints save and restore. Off in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.distributed import all_reduce_sum, is_distributed
from fewshot.errors import FewshotError

APPLY_TO = ("all", "anchors")


class ClassInterference(nn.Module):
    def __init__(self, n_classes: int, dim: int, p: float = 0.5, alpha: float = 0.5, alpha_random: bool = False,
                 negative: str = "random", means: str = "batch", memory_momentum: float = 0.9,
                 grad_through_means: bool = False, position: str = "after_norm", global_batch: bool = False,
                 apply_to: str = "all") -> None:
        super().__init__()
        for key, value, choices in (("negative", negative, ("random", "mean")), ("means", means, ("batch", "memory")),
                                    ("position", position, ("before_norm", "after_norm")),
                                    ("apply_to", apply_to, APPLY_TO)):
            if value not in choices:
                raise FewshotError(f"cir.{key} = {value!r} is not one of {', '.join(choices)}")
        if not 0.0 <= p <= 1.0 or not 0.0 <= alpha <= 1.0:
            raise FewshotError(f"cir.p = {p} and cir.alpha = {alpha} must both be in [0, 1]")
        if not 0.0 <= memory_momentum < 1.0:
            raise FewshotError(f"cir.memory_momentum = {memory_momentum} must be in [0, 1)")
        self.p, self.alpha, self.alpha_random = float(p), float(alpha), bool(alpha_random)
        self.negative, self.means, self.momentum = negative, means, float(memory_momentum)
        self.grad_through_means, self.position, self.global_batch = bool(grad_through_means), position, bool(global_batch)
        self.apply_to = apply_to
        self.n_classes = n_classes
        if means == "memory":
            self.register_buffer("memory", torch.zeros(n_classes, dim))
            self.register_buffer("memory_seen", torch.zeros(n_classes, dtype=torch.bool))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Features (B, D) with labels (B,) in 0..n_classes-1 -> perturbed features (unchanged in eval mode)."""
        if not self.training or self.p == 0.0:
            return features
        x = F.normalize(features, dim=-1) if self.position == "after_norm" else features
        means, available = self._class_means(x, labels)
        if not self.grad_through_means:
            means = means.detach()
        others = available[None, :] & (torch.arange(self.n_classes, device=labels.device)[None, :] != labels[:, None])
        if self.negative == "random":
            # A uniform draw among each row's allowed classes: the argmax of uniform keys on allowed entries.
            keys = torch.rand(others.shape, device=x.device).masked_fill(~others, -1.0)
            target = means[keys.argmax(1)]
        else:
            weights = others.to(means.dtype)
            target = weights @ means / weights.sum(1, keepdim=True).clamp(min=1.0)
        move = (torch.rand(len(x), device=x.device) < self.p) & others.any(1)
        alpha = torch.rand(len(x), device=x.device) * self.alpha if self.alpha_random else torch.full(
            (len(x),), self.alpha, device=x.device)
        step = (alpha * move).to(x.dtype)[:, None]
        moved = x + step * (target.to(x.dtype) - x)
        if self.position == "after_norm":
            moved = F.normalize(moved, dim=-1) * features.norm(dim=-1, keepdim=True)
        return torch.where(move[:, None], moved, features)

    def _class_means(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_classes, D) class means and which classes have one."""
        sums = torch.zeros(self.n_classes, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, labels, x)
        counts = torch.bincount(labels, minlength=self.n_classes).to(x.dtype)
        if self.global_batch and is_distributed():
            # Other processes' sums join as constants; this process's part keeps its gradient.
            total_sums, total_counts = all_reduce_sum(sums), all_reduce_sum(counts)
            sums, counts = sums + (total_sums - sums.detach()), total_counts
        present = counts > 0
        means = sums / counts.clamp(min=1.0)[:, None]
        if self.means == "batch":
            return means, present
        with torch.no_grad():
            first = present & ~self.memory_seen
            rate = torch.where(first, 1.0, 1.0 - self.momentum).to(x.dtype)[:, None] * present[:, None]
        # Rows of this batch's classes are the memory after this update (differentiable through the batch
        # means); the stored memory is detached.
        updated = self.memory.to(x.dtype) + rate * (means - self.memory.to(x.dtype))
        with torch.no_grad():
            self.memory.copy_(updated.detach())
            self.memory_seen |= present
        return updated, self.memory_seen.clone()
