"""Exact nearest-class-mean scoring of integer features (the raw-pixel floor): the same answer on every CPU.

Float32 distances that tie exactly (two classes as near a query, common with pixels that are mostly 0 or 255)
are broken by rounding, and rounding depends on the BLAS kernel a machine picks, so the float path's floor
differed by a query here and there across CPUs. Pixels are integers, so the comparison can be made exactly.
With K shots, class sum S_c and query q:

    K^2 ||q - S_c / K||^2 = ||K q - S_c||^2 = K^2 ||q||^2 - 2K q.S_c + ||S_c||^2,

and K^2 ||q||^2 is the same for every class, so the prediction is argmin_c (||S_c||^2 - 2K q.S_c). Those
are integers; they are computed in float64, where every product and partial sum is an integer below 2^53 and
is therefore exact whatever order the BLAS adds in (checked against that bound). Exact ties go to the lowest
class index of the episode. A hand-written loop because no library scores integer episodes exactly.
"""
from __future__ import annotations

import numpy as np

_EXACT_LIMIT = 2 ** 53  # every integer of magnitude below this is a float64
_PIECE_EPISODES = 32


def score_episodes_exact(features: np.ndarray, support_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    """Per-episode accuracy (E,) of nearest-class-mean classification under the Euclidean distance, exactly.

    `features` (M, D) integers (e.g. uint8 pixels); `support_rows` (E, N, K) and `query_rows` (E, N, Q) index
    its rows. Ties between classes go to the lowest class index.
    """
    features = np.asarray(features)
    if not np.issubdtype(features.dtype, np.integer):
        raise ValueError(f"exact scoring needs integer features, got {features.dtype}")
    support_rows, query_rows = np.asarray(support_rows), np.asarray(query_rows)
    n_episodes, ways, shots = support_rows.shape
    queries = query_rows.shape[2]
    features = features.reshape(len(features), -1)
    dim = features.shape[1]
    largest = int(np.abs(features).max()) if features.size else 0
    # |score| <= ||S||^2 + 2K |q.S| <= D (K m)^2 + 2 K D m (K m) = 3 D K^2 m^2.
    if 3 * dim * shots ** 2 * largest ** 2 >= _EXACT_LIMIT:
        raise ValueError(f"features up to {largest} in {dim} dimensions with {shots} shots exceed float64's exact "
                         "integers; exact scoring cannot be used")
    values = features.astype(np.float64)
    targets = np.repeat(np.arange(ways), queries)
    out = np.empty(n_episodes, dtype=np.float64)
    for start in range(0, n_episodes, _PIECE_EPISODES):
        stop = min(start + _PIECE_EPISODES, n_episodes)
        sums = values[support_rows[start:stop]].sum(axis=2)  # (e, N, D) class sums S_c
        q = values[query_rows[start:stop].reshape(stop - start, ways * queries)]  # (e, N*Q, D)
        scores = (sums * sums).sum(axis=2)[:, None, :] - 2.0 * shots * (q @ sums.transpose(0, 2, 1))
        out[start:stop] = (scores.argmin(axis=2) == targets).mean(axis=1)  # argmin: the first of equal minima
    return out
