"""Score many episodes at once over cached embeddings (nearest prototype, Euclidean or cosine)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

# Episodes scored together: their gathered queries (8 x 75 x 1600 float32 = 3.8 MB for miniImageNet's Conv-4)
# stay in cache between the gather and the product (1-32 episodes measured; 8 was fastest). Reading the
# embedding rows from memory and the products are the rest of the cost (benchmarks/bench_eval.py).
_PIECE_EPISODES = 8


def score_episodes(embeddings: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                   distance: str = "euclidean", batch_episodes: int = 250) -> np.ndarray:
    """Per-episode accuracy (E,) of nearest-prototype classification.

    `support_rows` (E, N, K) and `query_rows` (E, N, Q) index rows of `embeddings` (M, D). Episodes are
    scored a few at a time (at most `batch_episodes`) into buffers reused throughout, so memory is bounded
    whatever E is; on CPU the pieces are shared by torch's threads (each piece single-threaded, which
    small products prefer). The result does not depend on the piece size or the thread count.
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
    piece = max(1, min(_PIECE_EPISODES, batch_episodes))
    starts = range(0, n_episodes, piece)
    workers = min(torch.get_num_threads(), len(starts)) if emb.device.type == "cpu" else 1
    if workers <= 1:
        _score_pieces(emb, support_rows, query_rows, distance, starts, piece, out)
        return out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread a worker: the workers are the parallelism
    try:
        with ThreadPoolExecutor(workers) as pool:  # torch releases the GIL inside its operators
            list(pool.map(lambda w: _score_pieces(emb, support_rows, query_rows, distance, starts[w::workers], piece,
                                                  out), range(workers)))
    finally:
        torch.set_num_threads(threads)
    return out


@torch.no_grad()  # grad mode is per thread: the workers need it said too
def _score_pieces(emb: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray, distance: str,
                  starts: range, piece: int, out: np.ndarray) -> None:
    """Score episodes [start, start + piece) for each start into `out`."""
    _, ways, shots = support_rows.shape
    queries = query_rows.shape[2]
    targets = torch.arange(ways, device=emb.device).repeat_interleave(queries)
    buffer = torch.empty(piece * ways * queries, emb.shape[1], device=emb.device)
    for start in starts:
        count = min(piece, len(support_rows) - start)
        # Row indices become int64 a piece at a time (memory stays bounded); ascontiguousarray because torch
        # refuses numpy views with negative strides (e.g. a reversed class axis).
        support = torch.from_numpy(np.ascontiguousarray(support_rows[start:start + count], dtype=np.int64))
        query = torch.from_numpy(np.ascontiguousarray(query_rows[start:start + count], dtype=np.int64))
        # Prototypes straight from the rows (a mean per bag; the support rows are never copied out).
        protos = F.embedding_bag(support.reshape(count * ways, shots).to(emb.device), emb,
                                 mode="mean").reshape(count, ways, -1)
        q = torch.index_select(emb, 0, query.reshape(-1).to(emb.device),
                               out=buffer[: count * ways * queries]).reshape(count, ways * queries, -1)
        if distance == "cosine":
            scores = torch.bmm(q, F.normalize(protos, dim=-1).transpose(1, 2))
        else:
            # -||q - p||^2 up to the per-query constant ||q||^2, which does not change the argmax.
            scores = 2 * torch.bmm(q, protos.transpose(1, 2)) - protos.pow(2).sum(-1).unsqueeze(1)
        correct = scores.argmax(dim=2) == targets
        out[start:start + count] = correct.double().mean(dim=1).cpu().numpy()
