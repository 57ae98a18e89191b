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


def test_sample_calls_is_successive_calls_and_draws_a_fixed_count():
    """The training loop's contract: calls at once equal successive calls, and the state advances by a known count."""
    a = WithinParentSampler(COUNTS, PARENTS, 3, 1, 2, seed=9)
    b = WithinParentSampler(COUNTS, PARENTS, 3, 1, 2, seed=9)
    block = a.sample_calls(4, 2)
    singles = [b.sample_calls(1, 2) for _ in range(4)]
    assert np.array_equal(block.classes, np.concatenate([s.classes for s in singles]))
    assert np.array_equal(block.support, np.concatenate([s.support for s in singles]))
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    bits = np.random.PCG64(9)
    bits.advance(4 * a.draws_per_call(2))
    assert bits.state == a.rng.bit_generator.state


def test_training_sampler_by_protocol(tmp_path):
    from fewshot.data.store import Store, StoreWriter
    from fewshot.episodes.sampler import EpisodeSampler
    from fewshot.episodes.training import make_training_sampler

    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    with StoreWriter(tmp_path / "s", "toy", "v1") as writer:
        writer.add_split("train", np.zeros((len(labels), 2, 2, 1), np.uint8), labels,
                         [f"c{i:02d}" for i in range(len(COUNTS))], categories=[f"p{p}" for p in PARENTS])
    split = Store(tmp_path / "s").split("train")
    episodes = {"ways": 3, "shots": 1, "queries": 2}
    assert isinstance(make_training_sampler(split, episodes, 0), EpisodeSampler)
    sampler = make_training_sampler(split, {**episodes, "protocol": "within-parent"}, 0)
    parents = PARENTS[sampler.sample_calls(5, 1).classes]
    assert (parents == parents[:, :1]).all()
    with pytest.raises(FewshotError, match="cannot train"):
        make_training_sampler(split, {**episodes, "protocol": "meta-dataset"}, 0)
