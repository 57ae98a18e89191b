"""Embeddings for the head tests: a synthetic store's raw pixels and random-Conv-4 features, with episodes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch


@dataclass
class EmbeddedEpisodes:
    cache: torch.Tensor  # (M, D) float32: one split's embeddings
    support: np.ndarray  # (E, N, K) rows of cache
    query: np.ndarray  # (E, N, Q)


@pytest.fixture(scope="session")
def glyph_store(tmp_path_factory):
    """A synthetic store with 20 images a class (5-way 5-shot 15-query episodes fit): train 8, test 10 classes."""
    from fewshot.data.synthetic import prepare_synthetic

    out = tmp_path_factory.mktemp("glyphs") / "store"
    prepare_synthetic(out, seed=1, images_per_class=20, splits={"train": 8, "val": 2, "test": 10})
    return out


def embedded(store_path, embed, ways: int, shots: int, queries: int = 15, count: int = 200,
             seed: int = 0) -> EmbeddedEpisodes:
    """The test split embedded by `embed` (images (B, C, H, W) in [0, 1] -> (B, D)) and `count` episodes."""
    from fewshot.data.store import Store
    from fewshot.episodes.sampler import EpisodeSampler
    from fewshot.evaluate.embed import embed_rows

    split = Store(store_path).split("test")
    cache = embed_rows(embed, split.images, np.arange(len(split)), torch.device("cpu"))
    batch = EpisodeSampler(split.class_counts, ways, shots, queries, seed=seed).sample(count)
    support, query = batch.rows(split.class_offsets)
    return EmbeddedEpisodes(cache, support, query)


def random_conv4(hidden: int = 16) -> torch.nn.Module:
    """An untrained Conv-4 (seeded) in eval mode: real post-ReLU network features, 16-d at 28x28."""
    from fewshot.models.registry import create_backbone

    torch.manual_seed(0)
    return create_backbone("conv4", in_channels=1, hidden=hidden).eval()
