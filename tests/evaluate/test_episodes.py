"""Nearest-prototype scoring over cached embeddings, on cases whose answer is known by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.data.store import Store
from fewshot.episodes.sampler import EpisodeSampler
from fewshot.evaluate.embed import embed_rows, pixel_embed
from fewshot.evaluate.distributed import evaluate_episodes
from fewshot.evaluate.episodes import score_episodes


def _points(*values) -> torch.Tensor:
    """Embeddings (M, D) from rows of numbers."""
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), -1)


def test_one_hot_class_embeddings_score_100():
    # 4 classes x 3 images; row 3c + i is an image of class c, embedded as the one-hot vector of c.
    embeddings = torch.eye(4).repeat_interleave(3, dim=0)
    support = np.array([[[0], [3], [6]], [[9], [0], [3]]])  # (E=2, N=3, K=1)
    query = np.array([[[1, 2], [4, 5], [7, 8]], [[10, 11], [1, 2], [4, 5]]])
    assert score_episodes(embeddings, support, query).tolist() == [1.0, 1.0]
    assert score_episodes(embeddings, support, query, distance="cosine").tolist() == [1.0, 1.0]


def test_two_of_four_queries_wrong_scores_50():
    # 1-D: support A at 0, B at 10; A's queries 1 (right) and 9 (wrong), B's queries 8 (right) and 2 (wrong).
    embeddings = _points(0, 10, 1, 9, 8, 2)
    support = np.array([[[0], [1]]])
    query = np.array([[[2, 3], [4, 5]]])
    assert score_episodes(embeddings, support, query).tolist() == [0.5]
    # Swapping the classes' order in the episode changes nothing.
    assert score_episodes(embeddings, support[:, ::-1], query[:, ::-1]).tolist() == [0.5]


def test_prototype_is_the_support_mean_not_the_nearest_support():
    # A's supports 0 and 4 (prototype 2), B's 5 and 7 (prototype 6). Query 4.5 of A is nearest to support 4
    # but nearer to B's prototype: wrong. Query 1 of A is right; queries 6.5 and 9 of B are right.
    embeddings = _points(0, 4, 5, 7, 4.5, 1, 6.5, 9)
    support = np.array([[[0, 1], [2, 3]]])
    query = np.array([[[4, 5], [6, 7]]])
    assert score_episodes(embeddings, support, query).tolist() == [0.75]


def test_euclidean_and_cosine_differ():
    # A at (1, 0), B at (10, 10). Query (5, 4) of A is nearer A in distance but points nearer B's direction.
    # Query (20, 21) of B is right under both.
    embeddings = _points((1, 0), (10, 10), (5, 4), (20, 21))
    support = np.array([[[0], [1]]])
    query = np.array([[[2], [3]]])
    assert score_episodes(embeddings, support, query, distance="euclidean").tolist() == [1.0]
    assert score_episodes(embeddings, support, query, distance="cosine").tolist() == [0.5]
    with pytest.raises(ValueError, match="unknown distance"):
        score_episodes(embeddings, support, query, distance="manhattan")


def test_batching_episodes_does_not_change_results():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(60, 8, generator=generator)
    counts = np.full(6, 10)
    batch = EpisodeSampler(counts, 5, 2, 3, seed=0).sample(37)
    support, query = batch.rows(np.arange(6) * 10)
    reference = score_episodes(embeddings, support, query, batch_episodes=1000)
    assert len(reference) == 37 and 0.0 < reference.mean() < 1.0  # random embeddings: neither 0 nor 100%
    for size in (1, 5, 36):
        assert np.array_equal(score_episodes(embeddings, support, query, batch_episodes=size), reference)
    # Each episode's accuracy is a multiple of 1 / (N * Q).
    assert np.allclose(reference * 15, np.round(reference * 15))


def test_exactly_equal_distances_go_to_the_first_class_of_the_episode():
    # 1-D: A's support at 0, B's at 10; both queries at 5, exactly 5 from each prototype (exact in float32).
    # The tie goes to the episode's first class: A's query is right, B's is wrong; with the classes swapped
    # in the episode, B comes first and the outcome swaps (still 50%).
    embeddings = _points(0, 10, 5, 5)
    support = np.array([[[0], [1]]])
    query = np.array([[[2], [3]]])
    assert score_episodes(embeddings, support, query).tolist() == [0.5]
    many = score_episodes(embeddings, np.repeat(support, 40, 0), np.repeat(query, 40, 0), batch_episodes=7)
    assert many.tolist() == [0.5] * 40
    # Query of A at 5 and of B at 5: only A's counts; so a query of B alone at the tie point scores 0.
    assert score_episodes(embeddings, support, np.array([[[0], [3]]])).tolist() == [0.5]
    assert score_episodes(_points(0, 10, 5), support, np.array([[[0], [2]]])).tolist() == [0.5]
    assert score_episodes(_points(0, 10, 5), np.array([[[1], [0]]]), np.array([[[1], [2]]])).tolist() == [0.5]


def test_scores_equal_a_plain_distance_argmin_on_exact_integer_embeddings():
    # Small integers and 4 shots (prototypes are multiples of 1/4): every distance is exact in float32, so any
    # correct arithmetic must give these answers, ties included (first class wins). 300 episodes of 5-way
    # 4-shot 4-query over 12-d points in 0..3.
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randint(0, 4, (240, 12), generator=generator).float()
    support, query = EpisodeSampler(np.full(8, 30), 5, 4, 4, seed=2).sample(300).rows(np.arange(8) * 30)
    protos = embeddings[torch.from_numpy(support).long()].double().mean(dim=2)  # (E, N, D)
    queries = embeddings[torch.from_numpy(query).long()].double().flatten(1, 2)  # (E, N*Q, D)
    distances = ((queries[:, :, None, :] - protos[:, None, :, :]) ** 2).sum(-1)
    best = distances.argmin(dim=2)  # first minimum on ties
    expected = (best == torch.arange(5).repeat_interleave(4)).double().mean(dim=1).numpy()
    ties = (distances == distances.min(dim=2, keepdim=True).values).sum(dim=2) > 1
    assert ties.sum() > 20  # the case is tie-prone, so the rule is exercised
    for size in (1, 7, 300):
        assert np.array_equal(score_episodes(embeddings, support, query, batch_episodes=size), expected)


def test_evaluate_episodes_embeds_only_the_needed_rows_once(tiny_store):
    split = Store(tiny_store).split("test")
    batch = EpisodeSampler(split.class_counts, 3, 1, 2, seed=0).sample(4)
    support, query = batch.rows(split.class_offsets)
    needed = np.unique(np.concatenate([support.ravel(), query.ravel()]))
    assert len(needed) < len(split)  # otherwise the test could not tell

    seen = []

    def counting_embed(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.clone())
        return pixel_embed(images)

    accuracy = evaluate_episodes(counting_embed, split, batch, torch.device("cpu"), embed_batch=7)
    embedded = torch.cat(seen)
    assert len(embedded) == len(needed)
    expected_images = torch.from_numpy(np.array(split.images[needed])).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(embedded, expected_images)
    # Same as scoring over the embeddings of the whole split.
    everything = embed_rows(pixel_embed, split.images, np.arange(len(split)), torch.device("cpu"))
    assert np.array_equal(accuracy, score_episodes(everything, support, query))
