"""Ragged episodes: each episode has its own ways, and each class its own support and query counts.

Meta-Dataset's episodes (fewshot.episodes.metadataset) vary in way and shot, so they do not fit the
(E, N, K) arrays of `EpisodeBatch`. Here everything is flat, in episode-major then class-major order:

- `ways` (E,): classes of each episode;
- `classes` (T,), T = ways.sum(): class indices into the split, episode by episode;
- `support_counts` (T,), `query_counts` (T,): images of each (episode, class) in support and query;
- `support` (support_counts.sum(),), `query` (query_counts.sum(),): within-class image ranks.

Class j of episode e is flat class `class_start[e] + j`; its support ranks are
`support[support_start[t]:support_start[t + 1]]`. Store rows are a rank plus its class's offset, as for
fixed episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot.episodes.sampler import EpisodeBatch
from fewshot.errors import FewshotError

ARRAYS = ("ways", "classes", "support_counts", "query_counts", "support", "query")


def _starts(counts: np.ndarray) -> np.ndarray:
    """Offsets (n + 1,) of consecutive blocks of the given sizes."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


@dataclass(frozen=True)
class RaggedEpisodes:
    """E episodes of any ways and per-class shots (see the module docstring for the layout)."""

    ways: np.ndarray
    classes: np.ndarray
    support_counts: np.ndarray
    query_counts: np.ndarray
    support: np.ndarray
    query: np.ndarray

    def __post_init__(self) -> None:
        for name in ARRAYS:
            array = np.asarray(getattr(self, name))
            if array.ndim != 1:
                raise FewshotError(f"ragged episodes: `{name}` must be one-dimensional, got shape {array.shape}")
            object.__setattr__(self, name, array)
        total = int(self.ways.sum())
        if len(self.classes) != total or len(self.support_counts) != total or len(self.query_counts) != total:
            raise FewshotError(f"ragged episodes: ways add up to {total} classes but classes, support_counts and "
                               f"query_counts hold {len(self.classes)}, {len(self.support_counts)}, "
                               f"{len(self.query_counts)}")
        if int(self.support_counts.sum()) != len(self.support) or int(self.query_counts.sum()) != len(self.query):
            raise FewshotError("ragged episodes: support/query counts do not add up to the ranks held")

    def __len__(self) -> int:
        return len(self.ways)

    @property
    def class_start(self) -> np.ndarray:
        return _starts(self.ways)

    @property
    def support_start(self) -> np.ndarray:
        return _starts(self.support_counts)

    @property
    def query_start(self) -> np.ndarray:
        return _starts(self.query_counts)

    def episode_of_class(self) -> np.ndarray:
        """Episode index of each flat class (T,)."""
        return np.repeat(np.arange(len(self.ways)), self.ways)

    def support_sizes(self) -> np.ndarray:
        """Support images of each episode (E,)."""
        return np.add.reduceat(self.support_counts, self.class_start[:-1]) if len(self.ways) else np.zeros(0, int)

    def query_sizes(self) -> np.ndarray:
        """Query images of each episode (E,)."""
        return np.add.reduceat(self.query_counts, self.class_start[:-1]) if len(self.ways) else np.zeros(0, int)

    def mean_shots(self) -> np.ndarray:
        """Support images a class, averaged over each episode's classes (E,)."""
        return self.support_sizes() / self.ways

    def rows(self, class_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store rows of the support (S,) and query (Q,) images, in layout order."""
        base = np.asarray(class_offsets, dtype=np.int64)[self.classes]
        return (np.repeat(base, self.support_counts) + self.support,
                np.repeat(base, self.query_counts) + self.query)

    def with_classes(self, classes: np.ndarray) -> "RaggedEpisodes":
        """The same episodes with class indices replaced (mapping a file's classes onto a store)."""
        return RaggedEpisodes(self.ways, np.asarray(classes), self.support_counts, self.query_counts,
                              self.support, self.query)

    def __getitem__(self, index) -> "RaggedEpisodes":
        """Episodes `index` (an int or a slice with step 1), still ragged."""
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            index = slice(i, i + 1)
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise FewshotError("ragged episodes can be sliced with step 1 only")
        cs, ss, qs = self.class_start, self.support_start, self.query_start
        c0, c1 = cs[start], cs[max(start, stop)]
        return RaggedEpisodes(self.ways[start:stop], self.classes[c0:c1], self.support_counts[c0:c1],
                              self.query_counts[c0:c1], self.support[ss[c0]:ss[c1]], self.query[qs[c0]:qs[c1]])

    def episode(self, index: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(classes, support ranks of each class, query ranks of each class) of one episode."""
        one = self[index]
        ss, qs = one.support_start, one.query_start
        return (one.classes, [one.support[ss[j]:ss[j + 1]] for j in range(len(one.classes))],
                [one.query[qs[j]:qs[j + 1]] for j in range(len(one.classes))])

    @classmethod
    def from_batch(cls, batch: EpisodeBatch) -> "RaggedEpisodes":
        """Fixed N-way K-shot Q-query episodes in the ragged layout."""
        n, ways, shots = batch.support.shape
        queries = batch.query.shape[2]
        return cls(np.full(n, ways, dtype=np.int64), batch.classes.reshape(-1),
                   np.full(n * ways, shots, dtype=np.int64), np.full(n * ways, queries, dtype=np.int64),
                   batch.support.reshape(-1), batch.query.reshape(-1))

    @classmethod
    def concatenate(cls, parts: list["RaggedEpisodes"]) -> "RaggedEpisodes":
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS))
