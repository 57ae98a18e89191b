"""Logistic regression on frozen features (Tian et al. 2020, "Rethinking Few-Shot Image Classification").

The RFS evaluation (WangYueFt/rfs eval/meta_eval.py) L2-normalises the features and fits scikit-learn's
`LogisticRegression` (multinomial, lbfgs, C = 1, max_iter 1000) on each episode's support set: per episode
the convex problem

    minimise over W (D, N), b (N):  sum_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}] + ||W||^2 / (2C)

(the intercept is not penalised). One scikit-learn call an episode costs milliseconds, so 10,000 episodes
take a minute or more; here the episodes are solved together in torch, which no library does for many
small problems at once. Three exact rewritings make each problem small and well conditioned:

- Centring: x_i W + b = (x_i - m) W + (m W + b) with m the support mean, and the intercept absorbs m W,
  so the supports are centred (this removes the large common direction of post-ReLU features).
- The span: W lies in the span of the centred supports (the loss gradient is a combination of them), so
  when D > n = N*K the problem is written in an orthonormal basis of that span, from the Cholesky factor
  L of the centred Gram matrix (plus a constant, so it is invertible; the free intercept makes the
  constant feature's weight zero at the optimum): n coordinates a row, whatever D is. Episodes whose
  Gram matrix is singular (repeated images) use its eigendecomposition instead, dropping null directions.
- Newton's method, the Newton step from conjugate gradients on Hessian-vector products (no Hessian is
  formed), a forcing term min(0.5, sqrt|g|) |g|, a backtracking Armijo line search with a step size an
  episode, until every episode's gradient norm is below `tol`. float64 throughout the solve.

The Gram matrices and the final query products, the large operations, are float32 matrix products (the
features are float32). Softmax logits do not change when one constant is added to every intercept; that
direction is projected out of the Newton steps.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError
from fewshot.heads.base import Head, episode_targets
from fewshot.heads.registry import register_head

# Episodes whose rows are gathered at once: about 32 MB of float32 features (cache-sized pieces).
_GATHER_BYTES = 32 * 2**20
# Episodes solved together: float64 (E, n, n) coordinates, large enough that an operation is not all overhead,
# small enough to stay in cache (256-2048 measured on 5-way 5-shot; 512 was fastest).
_SOLVE_EPISODES = 512
# Eigenvalues below this fraction of the largest are directions the supports do not span.
_RANK_TOL = 1e-6


def _dot(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return (a[0] * b[0]).sum((1, 2)) + (a[1] * b[1]).sum(1)


def fit_logistic(z: torch.Tensor, labels: torch.Tensor, ways: int, C: float = 1.0, tol: float = 1e-6,
                 max_iter: int = 100, max_cg: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (E, r, N) and intercepts (E, N) minimising each episode's objective (module docstring).

    `z` (E, n, r): the support rows' features, `labels` (n,): their classes 0..N-1 (the same for every
    episode). Logits of rows x are x @ weights + intercepts. Newton-CG with a line search (module docstring).
    """
    episodes, _, dim = z.shape
    target = F.one_hot(labels.to(z.device), ways).to(z.dtype)
    weights = z.new_zeros(episodes, dim, ways)
    intercepts = z.new_zeros(episodes, ways)
    penalty = 1.0 / C
    zt = z.transpose(1, 2)

    def objective(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = torch.baddbmm(b.unsqueeze(1), z, w)
        return (torch.logsumexp(logits, dim=2) - (logits * target).sum(2)).sum(1) + 0.5 * penalty * (w * w).sum((1, 2))

    for _ in range(max_iter):
        probabilities = torch.softmax(torch.baddbmm(intercepts.unsqueeze(1), z, weights), dim=2)
        residual = probabilities - target
        gradient = (torch.baddbmm(weights, zt, residual, alpha=1.0, beta=penalty), residual.sum(1))
        norm = _dot(gradient, gradient).sqrt()
        active = norm > tol
        if not active.any():
            break

        def hessian_times(v: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            change = torch.baddbmm(v[1].unsqueeze(1), z, v[0])
            moved = probabilities * (change - (probabilities * change).sum(2, keepdim=True))
            out_b = moved.sum(1)
            return torch.baddbmm(v[0], zt, moved, beta=penalty), out_b - out_b.mean(1, keepdim=True)

        # Conjugate gradients on H d = -g, each episode stopping at its forcing tolerance.
        rest = (-gradient[0], gradient[1].mean(1, keepdim=True) - gradient[1])
        step = (torch.zeros_like(weights), torch.zeros_like(intercepts))
        direction = rest
        rest_sq = _dot(rest, rest)
        goal = (torch.clamp(norm.sqrt(), max=0.5) * norm) ** 2
        for _ in range(max_cg):
            done = rest_sq <= goal
            if done.all():
                break
            curved = hessian_times(direction)
            alpha = torch.where(done, 0.0, rest_sq / _dot(direction, curved).clamp_min(1e-300))
            step = (step[0] + alpha[:, None, None] * direction[0], step[1] + alpha[:, None] * direction[1])
            rest = (rest[0] - alpha[:, None, None] * curved[0], rest[1] - alpha[:, None] * curved[1])
            new_sq = _dot(rest, rest)
            beta = torch.where(done, 0.0, new_sq / rest_sq.clamp_min(1e-300))
            direction = (rest[0] + beta[:, None, None] * direction[0], rest[1] + beta[:, None] * direction[1])
            rest_sq = torch.where(done, rest_sq, new_sq)

        # Backtracking (Armijo) line search, a step size an episode; converged episodes do not move.
        current = objective(weights, intercepts)
        slope = _dot(gradient, step)
        size = active.to(z.dtype)
        pending = active.clone()
        slack = 1e-12 * current.abs()  # the objective's own rounding
        for _ in range(50):
            trial = objective(weights + size[:, None, None] * step[0], intercepts + size[:, None] * step[1])
            pending &= ~(trial <= current + 1e-4 * size * slope + slack)
            if not pending.any():
                break
            size = torch.where(pending, size / 2, size)
        size = torch.where(pending, 0.0, size)
        weights = weights + size[:, None, None] * step[0]
        intercepts = intercepts + size[:, None] * step[1]
    return weights, intercepts


def span_coordinates(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From Gram matrices (E, n, n) of centred support rows: their coordinates z (E, n, n) in an orthonormal
    basis of their span plus one constant feature, the map `back` (E, n, n) with which weights v in those
    coordinates are the combination `back @ v` of the centred rows, and the constant (E,)."""
    n = gram.shape[1]
    centred = gram
    constant = (torch.diagonal(centred, dim1=1, dim2=2).sum(1) / n ** 2).clamp_min(1e-12)
    shifted = centred + constant[:, None, None]
    factor, info = torch.linalg.cholesky_ex(shifted)
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device).expand_as(gram)
    back = torch.linalg.solve_triangular(factor.transpose(1, 2), eye, upper=True)
    z = factor
    singular = info != 0
    if singular.any():  # repeated images: the eigendecomposition, without its null directions
        values, vectors = torch.linalg.eigh(shifted[singular])
        keep = values > values[:, -1:].clamp_min(0) * _RANK_TOL
        root = torch.where(keep, values.clamp_min(1e-300).sqrt(), torch.zeros_like(values))
        inverse = torch.where(keep, 1.0 / root.clamp_min(1e-300), torch.zeros_like(values))
        z = z.clone()
        back = back.clone()
        z[singular] = vectors * root.unsqueeze(1)
        back[singular] = vectors * inverse.unsqueeze(1)
    return z, back, constant


def _parallel(work: Callable[[int, int], None], n_items: int, piece: int) -> None:
    """Run work(start, stop) over [0, n_items) in pieces, on torch's threads (one thread a worker)."""
    starts = list(range(0, n_items, piece))
    workers = min(torch.get_num_threads(), len(starts))
    if workers <= 1:
        for start in starts:
            work(start, min(start + piece, n_items))
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    @torch.no_grad()
    def run(first: int) -> None:
        for start in starts[first::workers]:
            work(start, min(start + piece, n_items))

    try:
        with ThreadPoolExecutor(workers) as pool:  # torch releases the GIL inside its operators
            list(pool.map(run, range(workers)))
    finally:
        torch.set_num_threads(threads)


def _rows(rows: np.ndarray, start: int, stop: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows[start:stop], dtype=np.int64).reshape(stop - start, -1))


@torch.no_grad()
def logistic_predictions(features: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                         C: float = 1.0, tol: float = 1e-6) -> torch.Tensor:
    """Predicted class (E, N*Q) of every query row, by logistic regression fitted on each episode's supports.

    `features` (M, D) float32; `support_rows` (E, N, K) and `query_rows` (E, N, Q) index its rows.
    """
    n_episodes, ways, shots = support_rows.shape
    n, dim = ways * shots, features.shape[1]
    raw = dim <= n  # few dimensions: solve on the centred features themselves
    piece = max(1, _GATHER_BYTES // ((n + ways * query_rows.shape[2]) * dim * 4))
    coords = torch.empty(n_episodes, n, dim if raw else n, dtype=torch.float64)

    def gather_support(start: int, stop: int) -> None:
        support = features[_rows(support_rows, start, stop).reshape(-1)].reshape(stop - start, n, dim)
        # Centred before the product: nearly parallel features would lose their differences to rounding in a
        # Gram matrix centred afterwards.
        centred = support - support.mean(1, keepdim=True)
        coords[start:stop] = centred if raw else centred @ centred.transpose(1, 2)

    _parallel(gather_support, n_episodes, piece)
    labels = episode_targets(ways, shots)
    combine = torch.empty(n_episodes, n if not raw else dim, ways, dtype=torch.float32)
    offset = torch.empty(n_episodes, ways, dtype=torch.float32)

    def solve(start: int, stop: int) -> None:
        if raw:
            weights, intercepts = fit_logistic(coords[start:stop], labels, ways, C, tol)
            combine[start:stop], offset[start:stop] = weights, intercepts
            return
        z, back, constant = span_coordinates(coords[start:stop])
        weights, intercepts = fit_logistic(z, labels, ways, C, tol)
        mix = back @ weights  # weights as combinations of the centred support rows
        combine[start:stop] = mix
        offset[start:stop] = intercepts + constant[:, None] * mix.sum(1)

    _parallel(solve, n_episodes, max(1, min(_SOLVE_EPISODES, -(-n_episodes // max(1, torch.get_num_threads())))))
    predicted = torch.empty(n_episodes, query_rows.shape[1] * query_rows.shape[2], dtype=torch.int64)

    def predict(start: int, stop: int) -> None:
        count = stop - start
        support = features[_rows(support_rows, start, stop).reshape(-1)].reshape(count, n, dim)
        query = features[_rows(query_rows, start, stop).reshape(-1)].reshape(count, -1, dim)
        mean = support.mean(1, keepdim=True)
        weights = combine[start:stop] if raw else (support - mean).transpose(1, 2) @ combine[start:stop]
        logits = torch.baddbmm(offset[start:stop].unsqueeze(1), query - mean, weights)
        predicted[start:stop] = logits.argmax(dim=2)

    _parallel(predict, n_episodes, piece)
    return predicted


@register_head("logistic")
class LogisticHead(Head):
    """Multinomial logistic regression on each episode's support set (RFS); L2N features by default."""

    name = "logistic"
    default_norm = "L2N"
    CONFIG_KEYS = {**Head.CONFIG_KEYS, "C": "head_C"}

    def __init__(self, C: float = 1.0, norm: str = "default", tol: float = 1e-6) -> None:
        super().__init__(norm)
        if not C > 0:
            raise FewshotError(f"eval.head_C must be positive (the inverse L2 penalty), got {C}")
        self.C = float(C)
        self.tol = tol

    def settings(self) -> dict:
        return {**super().settings(), "C": self.C}

    def score(self, cache: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
        support_rows, query_rows = np.asarray(support_rows), np.asarray(query_rows)
        features = self.norm(cache.float().cpu()).contiguous()
        predicted = logistic_predictions(features, support_rows, query_rows, self.C, self.tol)
        targets = episode_targets(query_rows.shape[1], query_rows.shape[2])
        return (predicted == targets).double().mean(dim=1).numpy()
