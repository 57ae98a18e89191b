"""Within-parent N-way K-shot episodes: every class of an episode under one parent."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fewshot.episodes.within_parent import WithinParentSampler
from fewshot.errors import FewshotError

# Parent 0: 6 classes, parent 1: 4 classes, parent 2: 3 classes (too few for 4-way), one class too small.
PARENTS = np.array([0] * 6 + [1] * 4 + [2] * 3)
COUNTS = np.array([10, 12, 8, 9, 10, 4, 10, 10, 11, 9, 20, 20, 20])


def test_one_parent_an_episode_distinct_classes_and_images():
    batch = WithinParentSampler(COUNTS, PARENTS, 4, 2, 3, seed=0).sample(3000)
    assert batch.classes.shape == (3000, 4) and batch.support.shape == (3000, 4, 2) and batch.query.shape == (3000, 4, 3)
    parents = PARENTS[batch.classes]
    assert (parents == parents[:, :1]).all()
    assert set(parents[:, 0].tolist()) == {0, 1}  # parent 2 has only 3 classes
    assert 5 not in batch.classes  # 4 images < shots + queries
    assert all(len(set(e)) == 4 for e in batch.classes.tolist())
    ranks = np.concatenate([batch.support, batch.query], axis=2)
    assert all(len(set(r)) == 5 for r in ranks.reshape(-1, 5).tolist())
    assert (ranks < COUNTS[batch.classes][..., None]).all()
    # Parents uniformly (not by size): about half the episodes each.
    assert stats.binomtest(int((parents[:, 0] == 0).sum()), 3000).pvalue > 1e-3


def test_same_seed_same_episodes():
    a = WithinParentSampler(COUNTS, PARENTS, 3, 1, 2, seed=4).sample(1200)  # two chunks of draws
    b = WithinParentSampler(COUNTS, PARENTS, 3, 1, 2, seed=4).sample(1200)
    assert np.array_equal(a.classes, b.classes) and np.array_equal(a.query, b.query)


def test_errors_name_the_fix():
    with pytest.raises(FewshotError, match="no parent has 7 classes"):
        WithinParentSampler(COUNTS, PARENTS, 7, 1, 1)
    with pytest.raises(FewshotError, match="name their parent"):
        WithinParentSampler(COUNTS, None, 3, 1, 1)
