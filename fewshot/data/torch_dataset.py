"""A prepared split as a real `torch.utils.data.Dataset` subclass.

`StoreSplit` already indexes like a Dataset (and DataLoader accepts it), but libraries that check
`isinstance(dataset, torch.utils.data.Dataset)`, such as learn2learn's `MetaDataset`, refuse it; this thin
wrapper passes that check and hands them the class index they would otherwise build with a pass over
every image:

    meta = learn2learn.data.MetaDataset(ds := SplitDataset(split), labels_to_indices=ds.labels_to_indices())
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from fewshot.data.store import StoreSplit


class SplitDataset(Dataset):
    """(image, label) pairs of a StoreSplit: float32 (C, H, W) in [0, 1], or `transform(uint8 (H, W, C))`."""

    def __init__(self, split: StoreSplit, transform: Callable[[np.ndarray], object] | None = None) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        if self.transform is None:
            return self.split[index]
        return self.transform(np.array(self.split.images[index])), int(self.split.labels[index])

    def labels_to_indices(self) -> dict[int, list[int]]:
        """class index -> its rows; classes are contiguous in a store, so this reads no image."""
        return {c: list(range(int(start), int(start) + int(count)))
                for c, (start, count) in enumerate(zip(self.split.class_offsets, self.split.class_counts))}

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.split.labels, dtype=np.int64))
