"""Vectorised N-way K-shot Q-query episode sampling driven only by its own numpy Generator.

An episode is three integer arrays: `classes` (N,) indices into the split's classes, `support` (N, K) and
`query` (N, Q) ranks of images within their class. `rows()` turns ranks into store rows with one addition
because the store keeps each class contiguous.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot.errors import FewshotError


@dataclass(frozen=True)
class EpisodeBatch:
    """E episodes at once: classes (E, N), support (E, N, K), query (E, N, Q) within-class ranks."""

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ways(self) -> int:
        return self.classes.shape[1]

    @property
    def shots(self) -> int:
        return self.support.shape[2]

    @property
    def queries(self) -> int:
        return self.query.shape[2]

    def rows(self, class_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store rows of support (E, N, K) and query (E, N, Q) images."""
        base = np.asarray(class_offsets)[self.classes][..., None]
        return base + self.support, base + self.query

    def __getitem__(self, index) -> "EpisodeBatch":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return EpisodeBatch(self.classes[index], self.support[index], self.query[index])


def check_episode_shape(ways: int, shots: int, queries: int, class_counts: np.ndarray,
                        class_names: list[str] | None = None, what: str = "split") -> None:
    """Raise a one-line error when the split cannot supply such episodes."""
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if int(value) < 1:
            raise FewshotError(f"{name} must be a positive integer, got {value}")
    counts = np.asarray(class_counts)
    if ways > len(counts):
        raise FewshotError(f"ways={ways} is more than the {len(counts)} classes of the {what}; use --ways {len(counts)} or fewer")
    smallest = int(counts.argmin())
    if shots + queries > counts[smallest]:
        label = class_names[smallest] if class_names else f"class {smallest}"
        raise FewshotError(
            f"shots + queries = {shots + queries} is more than the {int(counts[smallest])} images of "
            f"{label!r} (the smallest class of the {what}); lower --shots or --queries"
        )


class EpisodeSampler:
    """Draws episodes uniformly: N distinct classes, then K+Q distinct images of each, all from `seed`.

    The same (class_counts, ways, shots, queries, seed) gives the same episodes on any machine: only
    numpy's PCG64 Generator is used, never global RNG state.
    """

    def __init__(self, class_counts: np.ndarray, ways: int, shots: int, queries: int, seed: int = 0,
                 class_names: list[str] | None = None) -> None:
        self.class_counts = np.asarray(class_counts, dtype=np.int64)
        check_episode_shape(ways, shots, queries, self.class_counts, class_names)
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._max_count = int(self.class_counts.max())

    def sample(self, count: int) -> EpisodeBatch:
        if count < 1:
            raise FewshotError(f"episode count must be a positive integer, got {count}")
        n_classes = len(self.class_counts)
        per_class = self.shots + self.queries
        # N distinct classes per episode: the N smallest of uniform keys is a uniform N-subset.
        keys = self.rng.random((count, n_classes))
        classes = np.argpartition(keys, self.ways - 1, axis=1)[:, : self.ways]
        classes = np.take_along_axis(classes, np.argsort(np.take_along_axis(keys, classes, 1), axis=1), 1)
        # K+Q distinct ranks per chosen class; ranks beyond the class size get key 2 and are never chosen.
        counts = self.class_counts[classes][..., None]
        image_keys = self.rng.random((count, self.ways, self._max_count))
        image_keys[np.arange(self._max_count) >= counts] = 2.0
        chosen = np.argpartition(image_keys, per_class - 1, axis=2)[..., :per_class]
        chosen = np.take_along_axis(chosen, np.argsort(np.take_along_axis(image_keys, chosen, 2), axis=2), 2)
        return EpisodeBatch(
            classes.astype(np.int32),
            chosen[..., : self.shots].astype(np.int32),
            chosen[..., self.shots:].astype(np.int32),
        )

    def __iter__(self):
        while True:
            yield self.sample(1)


def episode_labels(ways: int, per_class: int) -> np.ndarray:
    """Labels 0..N-1, each repeated per_class times, matching the (N, per_class) layout flattened."""
    return np.repeat(np.arange(ways), per_class)
