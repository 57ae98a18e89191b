"""The nearest_prototype head is today's scoring exactly; SimpleShot's CL2N on a case known by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.episodes.sampler import EpisodeSampler
from fewshot.evaluate.episodes import score_episodes
from fewshot.evaluate.heads import create_head


def test_nearest_prototype_equals_score_episodes_ties_and_all():
    # Small integer embeddings: many queries are exactly as near two prototypes (ties go to the first class).
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randint(0, 3, (60, 4), generator=generator).float()
    batch = EpisodeSampler(np.full(6, 10), 5, 2, 3, seed=0).sample(300)
    support, query = batch.rows(np.arange(6) * 10)
    for distance in ("euclidean", "cosine"):
        expected = score_episodes(embeddings, support, query, distance)
        got = create_head("nearest_prototype", distance=distance, batch_episodes=7).score(embeddings, support, query)
        assert np.array_equal(got, expected)
    # Ties really happen here: the first-class rule decides some queries.
    protos = embeddings[support].mean(2)
    distances = torch.cdist(embeddings[query].reshape(300, 15, 4), protos)
    nearest = distances.min(dim=2, keepdim=True).values
    assert ((distances == nearest).sum(2) > 1).any()


def test_one_dimensional_case_by_hand():
    # Supports A at 0 and B at 10; A's queries 1 (right), 9 (wrong); B's 8 (right), 2 (wrong): 50%.
    embeddings = torch.tensor([[0.0], [10.0], [1.0], [9.0], [8.0], [2.0]])
    head = create_head("nearest_prototype")
    assert head.score(embeddings, np.array([[[0], [1]]]), np.array([[[2, 3], [4, 5]]])).tolist() == [0.5]


def test_simpleshot_centres_on_the_training_mean_then_normalises():
    # 1-D, training mean 5. Supports A at 6 and B at 1; queries A 5.5 and B 4.
    # UN: 4 is nearer A's 6 (2) than B's 1 (3): one query of two wrong, 50%.
    # CL2N: x -> sign(x - 5): A +1, B -1, 5.5 -> +1 (A), 4 -> -1 (B): 100%.
    # L2N without centring maps every point to +1: both queries tie, the first class (A) wins: 50%.
    train = torch.tensor([[3.0], [5.0], [7.0]])
    cache = torch.tensor([[6.0], [1.0], [5.5], [4.0]])
    support, query = np.array([[[0], [1]]]), np.array([[[2], [3]]])
    simpleshot = create_head("simpleshot")
    assert simpleshot.needs_train_split
    simpleshot.fit_split(train)
    assert simpleshot.norm.mean.tolist() == [5.0]
    assert simpleshot.score(cache, support, query).tolist() == [1.0]
    assert create_head("simpleshot", norm="UN").score(cache, support, query).tolist() == [0.5]
    assert create_head("simpleshot", norm="L2N").score(cache, support, query).tolist() == [0.5]
    assert create_head("nearest_prototype").score(cache, support, query).tolist() == [0.5]


def test_simpleshot_without_the_training_split_is_refused():
    with pytest.raises(RuntimeError, match="CL2N needs the training split"):
        create_head("simpleshot").score(torch.zeros(2, 1), np.array([[[0]]]), np.array([[[1]]]))


def test_simpleshot_equals_a_numpy_nearest_centroid_on_cl2n_features():
    rng = np.random.default_rng(0)
    train = rng.normal(2.0, 1.0, size=(50, 6)).astype(np.float32)
    cache = rng.normal(2.0, 1.0, size=(40, 6)).astype(np.float32)
    batch = EpisodeSampler(np.full(4, 10), 3, 2, 4, seed=1).sample(100)
    support, query = batch.rows(np.arange(4) * 10)
    centred = cache - train.astype(np.float64).mean(axis=0)
    features = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    centroids = features[support].mean(axis=2)  # (E, N, D)
    distances = ((features[query].reshape(100, 12, 1, 6) - centroids[:, None]) ** 2).sum(-1)
    expected = (distances.argmin(-1) == np.repeat(np.arange(3), 4)).mean(axis=1)
    head = create_head("simpleshot")
    head.fit_split(torch.from_numpy(train))
    assert np.allclose(head.score(torch.from_numpy(cache), support, query), expected)
    assert 0.2 < expected.mean() < 0.8  # random features: neither all right nor all wrong
