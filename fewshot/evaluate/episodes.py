"""Score many episodes at once over cached embeddings (nearest prototype, Euclidean or cosine)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.data.store import StoreSplit
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.evaluate import distributed as sharded


# Episodes a block: the cheap per-episode steps (prototypes, norms, argmax, counting) run once a block of this
# many, so Python and operator overheads are paid ~300 times for 10,000 episodes, not 10,000 times.
_BLOCK_EPISODES = 32
# Bytes of query rows gathered at a time on CPU (8 miniImageNet Conv-4 episodes, 75 x 1,600 float32 each):
# 1-32 episodes measured the same within noise, so few calls; small embeddings gather a whole block at once.
_GATHER_BYTES = 4 * 1024 * 1024


def score_episodes(embeddings: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                   distance: str = "euclidean", batch_episodes: int = 250) -> np.ndarray:
    """Per-episode accuracy (E,) of nearest-prototype classification.

    `support_rows` (E, N, K) and `query_rows` (E, N, Q) index rows of `embeddings` (M, D). Episodes are
    scored in blocks (at most `batch_episodes`) into buffers reused throughout, so memory is bounded
    whatever E is; on CPU the blocks are shared by torch's threads (each block single-threaded, which
    small products prefer). The result does not depend on the block size or the thread count.

    A query goes to its nearest prototype; of exactly equal scores, the first class of the episode wins
    (argmax's rule, tested).
    """
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"unknown distance {distance!r}")
    support_rows, query_rows = np.asarray(support_rows), np.asarray(query_rows)
    n_episodes = len(support_rows)
    emb = embeddings.float()
    if distance == "cosine":
        emb = F.normalize(emb, dim=-1)
    emb = emb.contiguous()
    out = np.empty(n_episodes, dtype=np.float64)
    if n_episodes == 0:
        return out
    _, ways, _ = support_rows.shape
    episode_bytes = ways * query_rows.shape[2] * emb.shape[1] * 4
    # On GPU a block is one gather and one product (kernel launches are the cost there, not cache misses).
    gather = max(1, _GATHER_BYTES // max(episode_bytes, 1)) if emb.device.type == "cpu" else _BLOCK_EPISODES
    block = max(1, min(batch_episodes, max(_BLOCK_EPISODES, gather)))
    gather = min(gather, block)
    starts = range(0, n_episodes, block)
    workers = min(torch.get_num_threads(), len(starts)) if emb.device.type == "cpu" else 1
    if workers <= 1:
        _score_blocks(emb, support_rows, query_rows, distance, starts, block, gather, out)
        return out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread a worker: the workers are the parallelism
    try:
        with ThreadPoolExecutor(workers) as pool:  # torch releases the GIL inside its operators
            list(pool.map(lambda w: _score_blocks(emb, support_rows, query_rows, distance, starts[w::workers], block,
                                                  gather, out), range(workers)))
    finally:
        torch.set_num_threads(threads)
    return out


@torch.no_grad()  # grad mode is per thread: the workers need it said too
def _score_blocks(emb: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray, distance: str,
                  starts: range, block: int, gather: int, out: np.ndarray) -> None:
    """Score episodes [start, start + block) for each start into `out`, gathering `gather` episodes' queries at a time.

    The arithmetic is that of every earlier version, so per-episode accuracies are the same bit for bit:
    scores Q P^T (Euclidean: 2 Q P^T - ||p||^2, the ||q||^2 term dropped as it does not move the argmax),
    the first prototype on exact ties. MKL's result for one (query, prototype) pair does not depend on how
    many episodes one product holds, so blocks and thread counts do not change it either. (P Q^T would run
    the product 3x faster for N = 5, but it rounds differently and changes near-tie decisions: 30 of the
    1,000 pixel-baseline Omniglot 5w5s episodes; see benchmarks/README.md.)
    """
    _, ways, shots = support_rows.shape
    queries = query_rows.shape[2]
    per_episode = ways * queries
    dim = emb.shape[1]
    targets = torch.arange(ways, device=emb.device).repeat_interleave(queries)
    query_buffer = torch.empty(gather * per_episode, dim, device=emb.device)
    scores = torch.empty(block, per_episode, ways, device=emb.device)
    norms = torch.empty(block, ways, device=emb.device)
    for start in starts:
        count = min(block, len(support_rows) - start)
        # Row indices become int64 a block at a time (memory stays bounded); ascontiguousarray because torch
        # refuses numpy views with negative strides (e.g. a reversed class axis).
        support = torch.from_numpy(np.ascontiguousarray(support_rows[start:start + count], dtype=np.int64))
        query = torch.from_numpy(np.ascontiguousarray(query_rows[start:start + count], dtype=np.int64))
        support, query = support.to(emb.device), query.to(emb.device).reshape(count, per_episode)
        # Prototypes straight from the rows (a mean per bag; the support rows are never copied out).
        protos = F.embedding_bag(support.reshape(count * ways, shots), emb, mode="mean").reshape(count, ways, dim)
        if distance == "cosine":
            protos = F.normalize(protos, dim=-1)
        protos_t = protos.transpose(1, 2)
        for first in range(0, count, gather):
            last = min(count, first + gather)
            q = torch.index_select(emb, 0, query[first:last].reshape(-1), out=query_buffer[: (last - first) * per_episode])
            torch.bmm(q.reshape(last - first, per_episode, dim), protos_t[first:last], out=scores[first:last])
        s = scores[:count]
        if distance == "euclidean":  # in place: 2 x exactly, then one rounding of the difference, as before
            s.mul_(2).sub_(torch.sum(protos.pow(2), dim=-1, out=norms[:count]).unsqueeze(1))
        correct = (s.argmax(dim=2) == targets).sum(dim=1)
        out[start:start + count] = correct.cpu().numpy() / per_episode


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
