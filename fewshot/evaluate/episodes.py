"""Score many episodes at once over cached embeddings (nearest prototype, Euclidean or cosine)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

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


# --- ragged episodes (Meta-Dataset): any ways, any shots a class ---------------------------------------------

# Queries of one piece of ragged episodes (padded): about the fixed path's 8 x 75 queries of 5w15q episodes.
_RAGGED_PIECE_QUERIES = 1024


def _take_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of the ranges [starts[i], starts[i] + lengths[i]) (vectorised)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def score_ragged_episodes(embeddings: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                          ways: np.ndarray, support_counts: np.ndarray, query_counts: np.ndarray,
                          distance: str = "euclidean") -> np.ndarray:
    """Per-episode accuracy (E,) of nearest-prototype classification of ragged episodes.

    Layout as fewshot.episodes.ragged.RaggedEpisodes: `ways` (E,), `support_counts`/`query_counts` (T,) per
    (episode, class), `support_rows` (S,) and `query_rows` (Q,) rows of `embeddings` in that order. Episodes
    are ordered by shape (ways, then queries) and scored a piece at a time, padded to the piece's largest
    episode and masked: prototypes of a piece in one embedding_bag, its queries in one gather, one batched
    product; no Python loop over episodes. Equal to scoring each episode alone (tests/evaluate).
    """
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"unknown distance {distance!r}")
    ways = np.asarray(ways, dtype=np.int64)
    support_counts = np.asarray(support_counts, dtype=np.int64)
    query_counts = np.asarray(query_counts, dtype=np.int64)
    n_episodes = len(ways)
    emb = embeddings.float()
    if distance == "cosine":
        emb = F.normalize(emb, dim=-1)
    emb = emb.contiguous()
    class_start = np.concatenate([[0], np.cumsum(ways)])
    episode_queries = np.add.reduceat(query_counts, class_start[:-1]) if n_episodes else np.zeros(0, np.int64)
    # Reorder everything by shape once (queries, then ways), so each piece is contiguous and nearly unpadded.
    order = np.lexsort((ways, episode_queries))
    class_order = _take_ranges(class_start[:-1][order], ways[order])
    s_start = np.concatenate([[0], np.cumsum(support_counts)])
    q_start = np.concatenate([[0], np.cumsum(query_counts)])
    support = np.asarray(support_rows, dtype=np.int64)[_take_ranges(s_start[:-1][class_order],
                                                                    support_counts[class_order])]
    query = np.asarray(query_rows, dtype=np.int64)[_take_ranges(q_start[:-1][class_order], query_counts[class_order])]
    ways, support_counts, query_counts = ways[order], support_counts[class_order], query_counts[class_order]
    episode_queries = episode_queries[order]
    class_start = np.concatenate([[0], np.cumsum(ways)])
    # Each query's class within its episode (its target), in the reordered layout.
    class_of_query = np.repeat(np.arange(len(query_counts)), query_counts)
    target = class_of_query - np.repeat(class_start[:-1], ways)[class_of_query]
    # Pieces: consecutive episodes whose padded queries (count x the last, largest) stay within the budget.
    pieces, start = [], 0
    while start < n_episodes:
        size = max(1, _RAGGED_PIECE_QUERIES // max(1, int(episode_queries[start])))
        while size > 1 and size * int(episode_queries[min(start + size, n_episodes) - 1]) > _RAGGED_PIECE_QUERIES:
            size = max(1, _RAGGED_PIECE_QUERIES // int(episode_queries[min(start + size, n_episodes) - 1]))
        pieces.append((start, min(start + size, n_episodes)))
        start += size
    layout = (support, query, ways, episode_queries, class_start, np.concatenate([[0], np.cumsum(support_counts)]),
              np.concatenate([[0], np.cumsum(episode_queries)]), target)
    out = np.empty(n_episodes, dtype=np.float64)
    workers = min(torch.get_num_threads(), len(pieces)) if emb.device.type == "cpu" else 1
    if workers <= 1:
        _score_ragged_pieces(emb, layout, distance, pieces, out)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda w: _score_ragged_pieces(emb, layout, distance, pieces[w::workers], out),
                              range(workers)))
        finally:
            torch.set_num_threads(threads)
    result = np.empty(n_episodes, dtype=np.float64)
    result[order] = out
    return result


@torch.no_grad()
def _score_ragged_pieces(emb: torch.Tensor, layout: tuple, distance: str, pieces: list[tuple[int, int]],
                         out: np.ndarray) -> None:
    support, query, ways, episode_queries, class_start, s_start, eq_start, target = layout
    device = emb.device
    for start, stop in pieces:
        c0, c1 = class_start[start], class_start[stop]
        count = stop - start
        bags = torch.from_numpy(support[s_start[c0]:s_start[c1]]).to(device)
        offsets = torch.from_numpy(s_start[c0:c1] - s_start[c0]).to(device)
        protos = F.embedding_bag(bags, emb, offsets, mode="mean")  # (classes of the piece, D)
        width = int(ways[start:stop].max())
        # (count, width) index into protos, padding pointing at an appended zero row.
        column = np.arange(width)
        valid_class = column < ways[start:stop, None]
        index = np.where(valid_class, class_start[start:stop, None] - c0 + column, c1 - c0)
        protos = torch.cat([protos, protos.new_zeros(1, protos.shape[1])])[torch.from_numpy(index).to(device)]
        height = int(episode_queries[start:stop].max())
        row = np.arange(height)
        valid_query = row < episode_queries[start:stop, None]
        flat = np.where(valid_query, eq_start[start:stop, None] + row, eq_start[start])
        q = torch.index_select(emb, 0, torch.from_numpy(query[flat].reshape(-1)).to(device)).reshape(count, height, -1)
        if distance == "cosine":
            scores = torch.bmm(q, F.normalize(protos, dim=-1).transpose(1, 2))
        else:
            scores = 2 * torch.bmm(q, protos.transpose(1, 2)) - protos.pow(2).sum(-1).unsqueeze(1)
        scores.masked_fill_(torch.from_numpy(~valid_class).to(device).unsqueeze(1), float("-inf"))
        correct = (scores.argmax(dim=2).cpu().numpy() == target[flat]) & valid_query
        out[start:stop] = correct.sum(axis=1) / episode_queries[start:stop]
