"""The finetune head (Chen et al. 2019): a case known by hand, and batched training equal to one classifier
and one torch SGD optimizer an episode, as their code trains it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.evaluate.heads import create_head


def test_separated_classes_are_learned_by_both_classifiers():
    # Class 0 near (5, 0), class 1 near (0, 5): after 100 epochs both classifiers get every query right.
    cache = torch.tensor([[5.0, 0.2], [4.8, -0.1], [0.1, 5.1], [-0.2, 4.9], [6.0, 1.0], [1.0, 6.0], [3.0, 0.5]])
    support, query = np.array([[[0, 1], [2, 3]]]), np.array([[[4, 6], [5, 5]]])
    for classifier in ("linear", "cosine"):
        assert create_head("finetune", classifier=classifier).score(cache, support, query).tolist() == [1.0]


def _reference(cache, support, query, seed, epochs=100, batch=4, classifier="linear"):
    """Per episode: nn.Linear (or the weight-normalised cosine layer) and torch.optim.SGD, drawing the same
    random numbers in the same order as the head."""
    count, ways, shots = support.shape
    n, dim = ways * shots, cache.shape[1]
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(dim)
    weights = (torch.rand(count, ways, dim, generator=generator) * 2 - 1) * bound
    biases = (torch.rand(count, ways, generator=generator) * 2 - 1) * bound if classifier == "linear" else None
    orders = [torch.rand(count, n, generator=generator).argsort(dim=1) for _ in range(epochs)]
    labels = torch.arange(ways).repeat_interleave(shots)
    accuracies = []
    for e in range(count):
        x = cache[torch.from_numpy(support[e].reshape(-1))]
        if classifier == "linear":
            layer = nn.Linear(dim, ways)
            with torch.no_grad():
                layer.weight.copy_(weights[e])
                layer.bias.copy_(biases[e])
            model = layer
        else:
            layer = nn.utils.parametrizations.weight_norm(nn.Linear(dim, ways, bias=False), dim=0)
            with torch.no_grad():
                layer.parametrizations.weight.original1.copy_(weights[e])
                layer.parametrizations.weight.original0.copy_(weights[e].norm(dim=1, keepdim=True))
            model = lambda v, layer=layer: 2.0 * layer(v / (v.norm(dim=1, keepdim=True) + 1e-5))  # noqa: E731
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9, dampening=0.9, weight_decay=0.001)
        for order in orders:
            for first in range(0, n, batch):
                picked = order[e, first:first + batch]
                optimizer.zero_grad()
                F.cross_entropy(model(x[picked]), labels[picked]).backward()
                optimizer.step()
        with torch.no_grad():
            predicted = model(cache[torch.from_numpy(query[e].reshape(-1))]).argmax(1)
        accuracies.append((predicted == torch.arange(ways).repeat_interleave(query.shape[2])).double().mean().item())
    return np.array(accuracies)


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_batched_training_equals_one_optimizer_an_episode(classifier):
    rng = np.random.default_rng(0)
    cache = torch.from_numpy(rng.normal(size=(40, 6)).astype(np.float32)) + torch.arange(4).repeat_interleave(10)[:, None] * 0.3
    from fewshot.episodes.sampler import EpisodeSampler

    batch = EpisodeSampler(np.full(4, 10), 3, 3, 4, seed=0).sample(6)
    support, query = batch.rows(np.arange(4) * 10)
    head = create_head("finetune", classifier=classifier, epochs=20, seed=5)
    got = head.score(cache, support, query)
    expected = _reference(cache, support, query, seed=5, epochs=20, classifier=classifier)
    assert np.allclose(got, expected), (got, expected)
    assert 0.2 < got.mean() < 1.0  # noisy features: not all right


def test_the_seed_decides_and_is_recorded():
    rng = np.random.default_rng(1)
    cache = torch.from_numpy(rng.normal(size=(30, 5)).astype(np.float32))
    support, query = rng.integers(0, 30, (20, 3, 2)), rng.integers(0, 30, (20, 3, 3))
    a = create_head("finetune", epochs=5, seed=0).score(cache, support, query)
    assert np.array_equal(a, create_head("finetune", epochs=5, seed=0).score(cache, support, query))
    assert not np.array_equal(a, create_head("finetune", epochs=5, seed=1).score(cache, support, query))
    assert create_head("finetune", seed=1).describe()["seed"] == 1
