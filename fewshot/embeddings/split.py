"""One split's embeddings, addressed like a store split: image (class, rank) is row offset[class] + rank."""
from __future__ import annotations

import numpy as np
import torch

from fewshot.errors import FewshotError


class EmbeddedSplit:
    """What evaluation needs of a store split (names, counts, offsets, checksum), with embeddings for images.

    `embeddings_of(rows)` gives the embeddings of store rows, the cache `fewshot eval` would have computed.
    """

    def __init__(self, dataset: str, name: str, class_names: list[str], class_counts: np.ndarray, checksum: str,
                 embeddings: np.ndarray, labels: np.ndarray, ranks: np.ndarray, where: str = "embedding file") -> None:
        self.dataset = dataset
        self.name = name
        self.class_names = class_names
        self.class_counts = np.asarray(class_counts, dtype=np.int64)
        self.class_offsets = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]]).astype(np.int64)
        self.checksum = checksum
        self.manifest: dict = {}
        self.where = where
        self._embeddings = embeddings
        # Store row -> file row (-1: the file has no embedding of that image).
        self._position = np.full(int(self.class_counts.sum()), -1, dtype=np.int64)
        self._position[self.class_offsets[labels.astype(np.int64)] + ranks.astype(np.int64)] = np.arange(len(labels))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def embeddings_of(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), D) float32 on CPU: the embeddings of store rows `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        position = self._position[rows]
        if (position < 0).any():
            row = int(rows[np.flatnonzero(position < 0)[0]])
            label = int(np.searchsorted(self.class_offsets, row, side="right") - 1)
            raise FewshotError(f"{self.where} has no row for image rank {row - self.class_offsets[label]} of class "
                               f"{self.class_names[label]!r}, which the episodes use; export the whole split")
        return torch.from_numpy(np.ascontiguousarray(self._embeddings[position], dtype=np.float32))
