"""The seeded N-way K-shot sampler: distinctness, ranges, labels, determinism, uniformity, errors."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fewshot.episodes.sampler import EpisodeBatch, EpisodeSampler, episode_labels
from fewshot.errors import FewshotError

# Uneven class sizes: ranks must stay below each class's own count, not the largest.
COUNTS = np.array([7, 12, 5, 9, 20, 6, 8, 5])


def _batch(seed: int = 0, count: int = 500, ways: int = 5, shots: int = 2, queries: int = 3) -> EpisodeBatch:
    return EpisodeSampler(COUNTS, ways, shots, queries, seed).sample(count)


def test_shapes_and_dtypes():
    batch = _batch(count=40)
    assert batch.classes.shape == (40, 5) and batch.support.shape == (40, 5, 2) and batch.query.shape == (40, 5, 3)
    assert (len(batch), batch.ways, batch.shots, batch.queries) == (40, 5, 2, 3)


def test_distinct_classes_and_distinct_ranks_within_class_size():
    batch = _batch()
    assert all(len(set(episode)) == 5 for episode in batch.classes.tolist())
    assert batch.classes.min() >= 0 and batch.classes.max() < len(COUNTS)
    ranks = np.concatenate([batch.support, batch.query], axis=2)  # (E, N, K+Q)
    sizes = COUNTS[batch.classes]  # (E, N)
    assert ranks.min() >= 0
    assert (ranks < sizes[..., None]).all()
    assert all(len(set(r)) == 5 for r in ranks.reshape(-1, 5).tolist())
    # The 5-image classes must be used whole: every rank 0..4 appears, in some order.
    small = ranks[sizes == 5]
    assert len(small) > 0 and (np.sort(small, axis=1) == np.arange(5)).all()


def test_rows_add_class_offsets():
    batch = _batch(count=3)
    offsets = np.concatenate([[0], np.cumsum(COUNTS)[:-1]])
    support_rows, query_rows = batch.rows(offsets)
    assert np.array_equal(support_rows, offsets[batch.classes][..., None] + batch.support)
    assert np.array_equal(query_rows, offsets[batch.classes][..., None] + batch.query)
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    assert (labels[support_rows] == batch.classes[..., None]).all()
    assert (labels[query_rows] == batch.classes[..., None]).all()


def test_episode_labels():
    assert episode_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    assert episode_labels(1, 4).tolist() == [0, 0, 0, 0]


def test_same_seed_same_episodes_different_seed_different():
    a, b, c = _batch(seed=7), _batch(seed=7), _batch(seed=8)
    for x, y in ((a.classes, b.classes), (a.support, b.support), (a.query, b.query)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.classes, c.classes)
    assert not np.array_equal(a.support, c.support)


def test_sampling_in_pieces_continues_the_stream():
    sampler = EpisodeSampler(COUNTS, 3, 1, 2, seed=1)
    first, second = sampler.sample(4), sampler.sample(4)
    assert not np.array_equal(first.classes, second.classes)
    again = EpisodeSampler(COUNTS, 3, 1, 2, seed=1)
    assert np.array_equal(again.sample(4).support, first.support)


def test_indexing_a_batch():
    batch = _batch(count=6)
    one = batch[2]
    assert len(one) == 1 and np.array_equal(one.classes[0], batch.classes[2])
    assert np.array_equal(batch[1:4].query, batch.query[1:4])


def test_classes_and_ranks_are_drawn_uniformly():
    batch = _batch(seed=0, count=4000, ways=3, shots=1, queries=1)
    # Each class is in an episode with probability ways / classes.
    class_hits = np.bincount(batch.classes.ravel(), minlength=len(COUNTS))
    chi2 = stats.chisquare(class_hits)
    assert chi2.pvalue > 0.001, class_hits
    assert np.abs(class_hits / 4000 - 3 / 8).max() < 0.03
    # Within the 20-image class every rank is used about equally.
    ranks = np.concatenate([batch.support, batch.query], axis=2)[batch.classes == 4].ravel()
    rank_hits = np.bincount(ranks, minlength=20)
    assert len(rank_hits) == 20 and stats.chisquare(rank_hits).pvalue > 0.001, rank_hits
    # And every class's position in an episode (the label it gets) is uniform too.
    first_position = np.bincount(batch.classes[:, 0], minlength=len(COUNTS))
    assert stats.chisquare(first_position).pvalue > 0.001, first_position


@pytest.mark.parametrize(
    ("ways", "shots", "queries", "names", "message"),
    [
        (9, 1, 1, None, "ways=9 is more than the 8 classes"),
        (3, 3, 3, None, "class 2"),  # 6 > 5 images of class index 2, the first smallest
        (3, 3, 3, [f"c{i}" for i in range(8)], "'c2'"),
        (0, 1, 1, None, "ways must be a positive integer, got 0"),
        (3, -1, 1, None, "shots must be a positive integer, got -1"),
        (3, 1, 0, None, "queries must be a positive integer, got 0"),
    ],
)
def test_impossible_episodes_are_one_line_errors(ways, shots, queries, names, message):
    with pytest.raises(FewshotError) as error:
        EpisodeSampler(COUNTS, ways, shots, queries, 0, names)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_shots_plus_queries_equal_to_smallest_class_is_allowed():
    batch = EpisodeSampler(COUNTS, 8, 2, 3, 0).sample(2)
    assert sorted(batch.classes[0].tolist()) == list(range(8))


def test_episode_count_must_be_positive():
    with pytest.raises(FewshotError, match="positive"):
        EpisodeSampler(COUNTS, 3, 1, 1, 0).sample(0)
