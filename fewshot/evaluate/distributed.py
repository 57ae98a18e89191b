"""Sharded evaluation: ranks share the embedding and scoring work, and every rank ends with the single-process result.

The work is cut exactly where one process cuts it: the embedding batches of `embed_rows` (rank r embeds
batches r::world) and the episode blocks of `score_episodes` (rank r scores blocks r::world). Each piece is
computed with the same inputs and shapes as in one process, and the pieces are gathered back in order, so
the per-episode accuracies, and the result record built from them, equal a single-process evaluation.
Outside a process group these are the single-process computations. `evaluate_episodes` (validation during
training) embeds the rows a set of episodes uses once and scores them, through both.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from fewshot.data.store import StoreSplit
from fewshot.distributed import all_gather_rows, rank, world_size
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.evaluate.embed import batch_bounds, embed_batch
from fewshot.evaluate.embed import embed_rows as embed_rows_one
from fewshot.evaluate.episodes import score_episodes as score_one


def _interleave(parts: list[torch.Tensor], block_sizes: list[int]) -> torch.Tensor:
    """Undo the round-robin deal: block i went to rank i % world, as that rank's (i // world)-th block."""
    world = len(parts)
    cursors = [0] * world
    ordered = []
    for index, size in enumerate(block_sizes):
        owner = index % world
        ordered.append(parts[owner][cursors[owner]:cursors[owner] + size])
        cursors[owner] += size
    return torch.cat(ordered) if ordered else parts[0][:0]


def embed_rows(embed: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, rows: np.ndarray,
               device: torch.device, batch_size: int | None = None, precision: str = "fp32",
               channels_last: bool = False) -> torch.Tensor:
    """`fewshot.evaluate.embed.embed_rows` with its batches dealt round-robin over the ranks; same result on all."""
    if batch_size is None:
        batch_size = embed_batch(images.shape[1:], device)
    world = world_size()
    if world == 1:
        return embed_rows_one(embed, images, rows, device, batch_size, precision, channels_last)
    bounds = batch_bounds(len(rows), batch_size)
    mine = bounds[rank()::world]
    # One call over this rank's blocks: the same batches (every block but the global last is full), and one
    # reader, so a large split's mapped pages are handed back as the rank reads (fewshot.data.store.MappedReader).
    local = (embed_rows_one(embed, images, np.concatenate([rows[a:b] for a, b in mine]), device,
                            batch_size, precision, channels_last) if mine else torch.empty(0, 0))
    return _interleave(all_gather_rows(local), [b - a for a, b in bounds])


def score_episodes(embeddings: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                   distance: str = "euclidean", batch_episodes: int = 250) -> np.ndarray:
    """`fewshot.evaluate.episodes.score_episodes` with its episode blocks dealt round-robin over the ranks."""
    world = world_size()
    if world == 1:
        return score_one(embeddings, support_rows, query_rows, distance, batch_episodes)
    n_episodes = len(support_rows)
    starts = list(range(0, n_episodes, batch_episodes))
    mine = [score_one(embeddings, support_rows[s:s + batch_episodes], query_rows[s:s + batch_episodes], distance,
                      batch_episodes) for s in starts[rank()::world]]
    local = torch.from_numpy(np.concatenate(mine) if mine else np.empty(0, dtype=np.float64))[:, None]
    block_sizes = [min(batch_episodes, n_episodes - s) for s in starts]
    return _interleave(all_gather_rows(local), block_sizes)[:, 0].numpy()


def evaluate_episodes(embed: Callable[[torch.Tensor], torch.Tensor], split: StoreSplit, episodes: EpisodeBatch,
                      device: torch.device, distance: str = "euclidean", batch_episodes: int = 250,
                      precision: str = "fp32", channels_last: bool = False, embed_batch: int | None = None) -> np.ndarray:
    """Embed only the rows the episodes use, once, then score all episodes over that cache."""
    support_rows, query_rows = episodes.rows(split.class_offsets)
    needed = np.unique(np.concatenate([support_rows.ravel(), query_rows.ravel()]))
    # In a process group, ranks share the work and all get the single-process result (else: plain calls).
    cache = embed_rows(embed, split.images, needed, device, embed_batch, precision, channels_last)
    position = np.searchsorted(needed, support_rows), np.searchsorted(needed, query_rows)
    return score_episodes(cache, position[0], position[1], distance, batch_episodes)
