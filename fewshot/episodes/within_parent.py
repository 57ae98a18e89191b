"""Within-hierarchy N-way K-shot Q-query episodes: all classes of an episode share one parent.

Lake et al.'s Omniglot task is within one alphabet: told apart are characters of the same script, which
is harder than characters drawn from all alphabets. An episode picks a parent uniformly among those with
at least N classes holding K + Q images, then N of its classes and K + Q images of each, uniformly; the
result is an ordinary fixed-shape EpisodeBatch (class indices into the split).
"""
from __future__ import annotations

import numpy as np

from fewshot.episodes.metadataset import padded_groups
from fewshot.episodes.sampler import EpisodeBatch, smallest_keys
from fewshot.errors import FewshotError

_CHUNK_EPISODES = 1000  # episodes drawn together (bounds the per-image key array)


class WithinParentSampler:
    """N distinct classes of one parent, then K+Q distinct images of each, from its own PCG64 Generator."""

    def __init__(self, class_counts, parent_index: np.ndarray | None, ways: int, shots: int, queries: int,
                 seed: int = 0, parent_names: list[str] | None = None) -> None:
        counts = np.asarray(class_counts, dtype=np.int64)
        if parent_index is None:
            raise FewshotError("within-parent episodes need classes that name their parent; this split names none")
        for name, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if int(value) < 1:
                raise FewshotError(f"{name} must be a positive integer, got {value}")
        parent_index = np.asarray(parent_index)
        eligible = counts >= shots + queries
        groups, self.parents = [], []
        for p in np.unique(parent_index):
            members = np.flatnonzero((parent_index == p) & eligible)
            if len(members) >= ways:
                groups.append(members)
                self.parents.append(int(p))
        if not groups:
            largest = int(np.bincount(parent_index[eligible]).max()) if eligible.any() else 0
            raise FewshotError(f"no parent has {ways} classes of at least {shots + queries} images (the most is "
                               f"{largest}); lower --ways, --shots or --queries")
        self.members, self.sizes = padded_groups(groups)
        self.class_counts = counts
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.parent_names = parent_names
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def draws_per_call(self, count: int) -> int:
        """Uniform doubles one sample_calls(1, count) takes (a fixed number, so a training loop can skip ahead)."""
        return count * (1 + self.members.shape[1] + self.ways * int(self.class_counts.max()))

    def sample(self, count: int) -> EpisodeBatch:
        """`count` episodes, drawn at most 1,000 at a time (bounded memory)."""
        if count < 1:
            raise FewshotError(f"episode count must be a positive integer, got {count}")
        parts = [self.sample_calls(1, min(_CHUNK_EPISODES, count - s)) for s in range(0, count, _CHUNK_EPISODES)]
        if len(parts) == 1:
            return parts[0]
        return EpisodeBatch(*(np.concatenate([getattr(p, a) for p in parts]) for a in ("classes", "support", "query")))

    def sample_calls(self, calls: int, count: int) -> EpisodeBatch:
        """`calls` successive draws of `count` episodes at once (EpisodeSampler's contract, for training).

        Only uniform doubles are drawn, draws_per_call(count) a call, so the generator state after any
        number of calls is known without drawing (a resumed training run skips ahead exactly)."""
        if count < 1 or calls < 1:
            raise FewshotError(f"episode count must be a positive integer, got {count}")
        n, span, width = calls * count, int(self.class_counts.max()), self.members.shape[1]
        block = self.rng.random((calls, self.draws_per_call(count)))
        group_keys = block[:, :count].reshape(n)
        class_keys = block[:, count:count * (1 + width)].reshape(n, width)
        image_keys = block[:, count * (1 + width):].reshape(n, self.ways, span)
        group = np.minimum((group_keys * len(self.members)).astype(np.int64), len(self.members) - 1)
        class_keys[np.arange(width) >= self.sizes[group][:, None]] = 2.0
        positions = smallest_keys(class_keys, self.ways, self.sizes[group])
        classes = np.take_along_axis(self.members[group], positions, axis=1)
        counts = self.class_counts[classes]
        image_keys[np.arange(span) >= counts[..., None]] = 2.0
        chosen = smallest_keys(image_keys, self.shots + self.queries, counts)
        return EpisodeBatch(classes.astype(np.int32), chosen[..., : self.shots].astype(np.int32),
                            chosen[..., self.shots:].astype(np.int32))
