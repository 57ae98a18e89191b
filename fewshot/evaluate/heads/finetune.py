"""Fine-tuning a classifier on the support set, backbone frozen (Chen et al. 2019, "A Closer Look at Few-shot
Classification": Baseline with a linear classifier, Baseline++ with a cosine one).

As in their code (wyharveychen/CloserLookFewShot methods/baselinefinetune.py): a new classifier an episode,
SGD with learning rate 0.01, momentum 0.9, dampening 0.9, weight decay 0.001, cross-entropy on minibatches
of 4 support features, 100 passes (epochs) over the support set in a new random order each, weights
initialised as torch's nn.Linear does. The cosine classifier scores scale * cos(x, w_c) with a learnable
norm per class (weight normalisation), scale 2 (10 above 200 ways), as their distLinear.

Episodes are trained together: every episode's parameters are slices of one tensor, and the loss is the sum
of the episodes' own losses, so each slice gets exactly its episode's gradient and torch's SGD (elementwise)
steps each exactly as a separate optimizer would. Random orders and initial weights come from a generator
seeded with `seed`, drawn block by block in a fixed order: a result depends on the seed and the episodes only.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError
from fewshot.evaluate.heads.base import Head, episode_targets
from fewshot.evaluate.heads.registry import register_head

# Episodes trained together (fixed: the random draws, and so the results, follow the blocks).
_BLOCK_EPISODES = 500
CLASSIFIERS = ("linear", "cosine")


@register_head("finetune")
class FinetuneHead(Head):
    name = "finetune"
    CONFIG_KEYS = {**Head.CONFIG_KEYS, "classifier": "head_classifier", "epochs": "head_epochs", "lr": "head_lr",
                   "batch": "head_batch", "weight_decay": "head_weight_decay", "seed": "head_seed"}

    def __init__(self, classifier: str = "linear", epochs: int = 100, lr: float = 0.01, batch: int = 4,
                 weight_decay: float = 0.001, seed: int = 0, momentum: float = 0.9, dampening: float = 0.9,
                 norm: str = "default") -> None:
        super().__init__(norm)
        if classifier not in CLASSIFIERS:
            raise FewshotError(f"unknown classifier eval.head_classifier={classifier!r}; choose linear or cosine")
        if epochs < 1 or batch < 1 or not lr > 0:
            raise FewshotError(f"eval.head_epochs ({epochs}) and eval.head_batch ({batch}) must be 1 or more, "
                               f"eval.head_lr ({lr}) positive")
        self.classifier = classifier
        self.epochs, self.lr, self.batch = int(epochs), float(lr), int(batch)
        self.weight_decay, self.seed = float(weight_decay), int(seed)
        self.momentum, self.dampening = momentum, dampening

    def settings(self) -> dict:
        return {**super().settings(), "classifier": self.classifier, "epochs": self.epochs, "lr": self.lr,
                "batch": self.batch, "weight_decay": self.weight_decay, "seed": self.seed}

    def score(self, cache: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
        support_rows, query_rows = np.asarray(support_rows), np.asarray(query_rows)
        features = self.norm(cache.float().cpu())
        n_episodes, ways, shots = support_rows.shape
        queries = query_rows.shape[2]
        generator = torch.Generator().manual_seed(self.seed)
        targets = episode_targets(ways, queries)
        out = np.empty(n_episodes, dtype=np.float64)
        for start in range(0, n_episodes, _BLOCK_EPISODES):
            stop = min(start + _BLOCK_EPISODES, n_episodes)
            support = features[_rows(support_rows, start, stop)]
            query = features[_rows(query_rows, start, stop)]
            with torch.enable_grad():
                scores = self._train(support, ways, generator)
            out[start:stop] = (scores(query).argmax(dim=2) == targets).double().mean(dim=1).numpy()
        return out

    def _train(self, support: torch.Tensor, ways: int, generator: torch.Generator):
        """Train one classifier an episode on `support` (E, N*K, D); return the scoring function."""
        count, n, dim = support.shape
        labels = episode_targets(ways, n // ways)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's initialisation (kaiming uniform, a = sqrt(5)), and its bias
        weight = (torch.rand(count, ways, dim, generator=generator) * 2 - 1) * bound
        if self.classifier == "linear":
            bias = ((torch.rand(count, ways, generator=generator) * 2 - 1) * bound).requires_grad_()
            weight.requires_grad_()
            params = [weight, bias]

            def scores(x: torch.Tensor) -> torch.Tensor:
                return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        else:
            gain = weight.norm(dim=2, keepdim=True).requires_grad_()  # weight norm's g starts at |v|
            weight.requires_grad_()
            params = [gain, weight]
            scale = 2.0 if ways <= 200 else 10.0

            def scores(x: torch.Tensor) -> torch.Tensor:
                unit = x / (x.norm(dim=2, keepdim=True) + 1e-5)
                return scale * unit @ (gain * weight / weight.norm(dim=2, keepdim=True)).transpose(1, 2)

        optimizer = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                                    weight_decay=self.weight_decay)
        episodes = torch.arange(count).unsqueeze(1)
        for _ in range(self.epochs):
            order = torch.rand(count, n, generator=generator).argsort(dim=1)
            for first in range(0, n, self.batch):
                picked = order[:, first:first + self.batch]
                logits = scores(support[episodes, picked])
                loss = F.cross_entropy(logits.reshape(-1, ways), labels[picked].reshape(-1), reduction="none")
                optimizer.zero_grad(set_to_none=True)
                loss.reshape(count, -1).mean(dim=1).sum().backward()
                optimizer.step()
        for p in params:
            p.requires_grad_(False)
        return scores


def _rows(rows: np.ndarray, start: int, stop: int) -> torch.Tensor:
    block = np.ascontiguousarray(rows[start:stop], dtype=np.int64)
    return torch.from_numpy(block.reshape(stop - start, -1))
