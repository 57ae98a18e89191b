"""Training batch samplers: P classes x K images (PK batches) for metric and classifier learners."""
from __future__ import annotations

import numpy as np

from fewshot.errors import FewshotError


class PKSampler:
    """P distinct classes, K distinct images of each, from its own seeded Generator.

    Returns global class indices (P,) and within-class ranks (P, K). Classes with fewer than K images are
    never drawn (an error if fewer than P classes remain).
    """

    def __init__(self, class_counts: np.ndarray, classes: int, per_class: int, seed: int = 0) -> None:
        counts = np.asarray(class_counts, dtype=np.int64)
        if classes < 1 or per_class < 1:
            raise FewshotError(f"batch.classes and batch.per_class must be positive, got {classes} and {per_class}")
        self.eligible = np.flatnonzero(counts >= per_class)
        if len(self.eligible) < classes:
            raise FewshotError(
                f"batch.classes={classes} but only {len(self.eligible)} classes have at least "
                f"batch.per_class={per_class} images; lower one of them"
            )
        self.counts = counts
        self.classes, self.per_class = int(classes), int(per_class)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._max_count = int(counts.max())

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.eligible[self.rng.choice(len(self.eligible), self.classes, replace=False)]
        keys = self.rng.random((self.classes, self._max_count))
        keys[np.arange(self._max_count) >= self.counts[chosen][:, None]] = 2.0
        ranks = np.argpartition(keys, self.per_class - 1, axis=1)[:, : self.per_class]
        return chosen.astype(np.int64), np.sort(ranks, axis=1).astype(np.int64)
