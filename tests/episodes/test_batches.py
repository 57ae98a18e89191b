"""PK batches: P distinct classes, K distinct images of each, only from classes that have K images."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.episodes.batches import PKSampler
from fewshot.errors import FewshotError

COUNTS = np.array([4, 2, 6, 3, 5, 1, 4])  # classes 1 and 5 have fewer than 3 images


def test_distinct_classes_and_ranks_within_class_size():
    sampler = PKSampler(COUNTS, classes=4, per_class=3, seed=0)
    seen = set()
    for _ in range(200):
        classes, ranks = sampler.sample()
        assert classes.shape == (4,) and ranks.shape == (4, 3)
        assert len(set(classes.tolist())) == 4
        assert (ranks < COUNTS[classes][:, None]).all() and ranks.min() >= 0
        assert all(len(set(r)) == 3 for r in ranks.tolist())
        assert (np.diff(ranks, axis=1) > 0).all()  # sorted
        seen.update(classes.tolist())
    assert seen == {0, 2, 3, 4, 6}  # the too-small classes 1 and 5 are never drawn


def test_seeded():
    a, b, c = (PKSampler(COUNTS, 3, 2, seed=s) for s in (5, 5, 6))
    draws_a = [a.sample() for _ in range(5)]
    draws_b = [b.sample() for _ in range(5)]
    draws_c = [c.sample() for _ in range(5)]
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(draws_a, draws_b))
    assert not all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(draws_a, draws_c))


def test_errors():
    with pytest.raises(FewshotError, match="only 5 classes have at least batch.per_class=3"):
        PKSampler(COUNTS, classes=6, per_class=3)
    with pytest.raises(FewshotError, match="must be positive"):
        PKSampler(COUNTS, classes=0, per_class=3)
