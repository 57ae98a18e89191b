"""Score many episodes at once over cached embeddings (nearest prototype, Euclidean or cosine)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.data.store import StoreSplit
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.evaluate import distributed as sharded


def score_episodes(embeddings: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                   distance: str = "euclidean", batch_episodes: int = 250) -> np.ndarray:
    """Per-episode accuracy (E,) of nearest-prototype classification.

    `support_rows` (E, N, K) and `query_rows` (E, N, Q) index rows of `embeddings` (M, D). Work is done
    `batch_episodes` at a time, so memory is bounded whatever E is.
    """
    # ascontiguousarray: torch refuses numpy views with negative strides (e.g. a reversed class axis).
    support_rows = torch.as_tensor(np.ascontiguousarray(support_rows), dtype=torch.long)
    query_rows = torch.as_tensor(np.ascontiguousarray(query_rows), dtype=torch.long)
    n_episodes, ways, _ = support_rows.shape
    queries = query_rows.shape[2]
    targets = torch.arange(ways).repeat_interleave(queries)
    emb = embeddings.float()
    if distance == "cosine":
        emb = F.normalize(emb, dim=-1)
    out = np.empty(n_episodes, dtype=np.float64)
    for start in range(0, n_episodes, batch_episodes):
        s = emb[support_rows[start:start + batch_episodes]]  # (B, N, K, D)
        q = emb[query_rows[start:start + batch_episodes]].flatten(1, 2)  # (B, N*Q, D)
        protos = s.mean(dim=2)
        if distance == "cosine":
            scores = torch.bmm(q, F.normalize(protos, dim=-1).transpose(1, 2))
        elif distance == "euclidean":
            # -||q - p||^2 up to the per-query constant ||q||^2, which does not change the argmax.
            scores = 2 * torch.bmm(q, protos.transpose(1, 2)) - protos.pow(2).sum(-1).unsqueeze(1)
        else:
            raise ValueError(f"unknown distance {distance!r}")
        correct = scores.argmax(dim=2) == targets
        out[start:start + len(s)] = correct.double().mean(dim=1).numpy()
    return out


def evaluate_episodes(embed: Callable[[torch.Tensor], torch.Tensor], split: StoreSplit, episodes: EpisodeBatch,
                      device: torch.device, distance: str = "euclidean", batch_episodes: int = 250,
                      precision: str = "fp32", channels_last: bool = False, embed_batch: int = 500) -> np.ndarray:
    """Embed only the rows the episodes use, once, then score all episodes over that cache."""
    support_rows, query_rows = episodes.rows(split.class_offsets)
    needed = np.unique(np.concatenate([support_rows.ravel(), query_rows.ravel()]))
    # In a process group, ranks share the work and all get the single-process result (else: plain calls).
    cache = sharded.embed_rows(embed, split.images, needed, device, embed_batch, precision, channels_last)
    position = np.searchsorted(needed, support_rows), np.searchsorted(needed, query_rows)
    return sharded.score_episodes(cache, position[0], position[1], distance, batch_episodes)
