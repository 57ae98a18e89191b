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
from fewshot.evaluate.heads.base import Head, episode_targets
from fewshot.evaluate.heads.registry import register_head

# Episodes solved together: float64 (E, n, n) coordinates, large enough that an operation is not all overhead,
# small enough to stay in cache (256-2048 measured on 5-way 5-shot; 512 was fastest).
_SOLVE_EPISODES = 512
# Episodes gathered at once (their rows stay in cache between the gather and the products; 16 was faster than
# 131, 32 MB of rows, on 5-way 5-shot 640-d features).
_PIECE_EPISODES = 16
# Eigenvalues below this fraction of the largest are directions the supports do not span.
_RANK_TOL = 1e-6


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-episode inner products of (E, r, N) tensors, (E, 1, 1)."""
    return torch.einsum("eij,eij->e", a, b)[:, None, None]


def fit_logistic(z: torch.Tensor, labels: torch.Tensor, ways: int, C: float = 1.0, tol: float = 1e-6,
                 max_iter: int = 100, max_cg: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (E, r, N) and intercepts (E, N) minimising each episode's objective (module docstring).

    `z` (E, n, r): the support rows' features, `labels` (n,): their classes 0..N-1 (the same for every
    episode). Logits of rows x are x @ weights + intercepts. Newton-CG with a line search (module docstring);
    the intercepts are the last row of one parameter tensor (a feature of ones, not penalised), so that every
    step is one operation on one tensor.
    """
    episodes, n, dim = z.shape
    target = F.one_hot(labels.to(z.device), ways).to(z.dtype)
    z = torch.cat([z, z.new_ones(episodes, n, 1)], dim=2)
    zt = z.transpose(1, 2)
    params = z.new_zeros(episodes, dim + 1, ways)
    penalty = z.new_full((dim + 1, 1), 1.0 / C)
    penalty[dim] = 0.0

    def centre_intercepts(v: torch.Tensor) -> torch.Tensor:
        """Project out the shift of all intercepts together (it changes no logit)."""
        v[:, dim] -= v[:, dim].mean(dim=1, keepdim=True)
        return v

    def objective(v: torch.Tensor) -> torch.Tensor:
        logits = z @ v
        return ((torch.logsumexp(logits, dim=2) - (logits * target).sum(2)).sum(1)
                + 0.5 * (penalty * v * v).sum((1, 2)))[:, None, None]

    for _ in range(max_iter):
        probabilities = torch.softmax(z @ params, dim=2)
        gradient = torch.baddbmm(penalty * params, zt, probabilities - target)
        norm = _dot(gradient, gradient).sqrt()
        active = norm > tol
        if not active.any():
            break

        def hessian_times(v: torch.Tensor) -> torch.Tensor:
            change = z @ v
            moved = probabilities * (change - (probabilities * change).sum(2, keepdim=True))
            return centre_intercepts(torch.baddbmm(penalty * v, zt, moved))

        # Conjugate gradients on H d = -g, each episode stopping at its forcing tolerance.
        rest = centre_intercepts(-gradient)
        step = torch.zeros_like(params)
        direction = rest
        rest_sq = _dot(rest, rest)
        goal = (torch.clamp(norm.sqrt(), max=0.5) * norm) ** 2
        for _ in range(max_cg):
            done = rest_sq <= goal
            if done.all():
                break
            curved = hessian_times(direction)
            alpha = torch.where(done, 0.0, rest_sq / _dot(direction, curved).clamp_min(1e-300))
            step = torch.addcmul(step, alpha, direction)
            rest = torch.addcmul(rest, alpha, curved, value=-1.0)
            new_sq = _dot(rest, rest)
            beta = torch.where(done, 0.0, new_sq / rest_sq.clamp_min(1e-300))
            direction = torch.addcmul(rest, beta, direction)
            rest_sq = torch.where(done, rest_sq, new_sq)

        # Backtracking (Armijo) line search, a step size an episode; converged episodes do not move.
        current = objective(params)
        slope = _dot(gradient, step)
        size = active.to(z.dtype)
        pending = active.clone()
        slack = 1e-12 * current.abs()  # the objective's own rounding
        for _ in range(50):
            trial = objective(torch.addcmul(params, size, step))
            pending &= ~(trial <= current + 1e-4 * size * slope + slack)
            if not pending.any():
                break
            size = torch.where(pending, size / 2, size)
        params = torch.addcmul(params, torch.where(pending, 0.0, size), step)
    return params[:, :dim], params[:, dim]


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


class _Gather:
    """Rows of `features` for a few episodes at a time, into buffers reused for every piece (one a thread):
    a fresh gather of every piece would spend more time allocating than reading."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features
        self.buffers: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, rows: np.ndarray, start: int, stop: int, slot: int) -> torch.Tensor:
        index = torch.from_numpy(np.ascontiguousarray(rows[start:stop], dtype=np.int64).reshape(-1))
        size = len(index) * self.features.shape[1]
        key = (slot, rows.shape[2])
        if key not in self.buffers or self.buffers[key].numel() < size:
            self.buffers[key] = torch.empty(size, dtype=self.features.dtype)
        out = self.buffers[key][:size].view(len(index), -1)
        return torch.index_select(self.features, 0, index, out=out).view(stop - start, -1, self.features.shape[1])


def _parallel(work: Callable[[int, int, int], None], n_items: int, piece: int) -> None:
    """Run work(start, stop, worker) over [0, n_items) in pieces, on torch's threads (one thread a worker)."""
    starts = list(range(0, n_items, piece))
    workers = min(torch.get_num_threads(), len(starts))

    @torch.no_grad()  # grad mode is per thread
    def run(first: int) -> None:
        for start in starts[first::max(1, workers)]:
            work(start, min(start + piece, n_items), first)

    if workers <= 1:
        run(0)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:  # torch releases the GIL inside its operators
            list(pool.map(run, range(workers)))
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def logistic_predictions(features: torch.Tensor, support_rows: np.ndarray, query_rows: np.ndarray,
                         C: float = 1.0, tol: float = 1e-6) -> torch.Tensor:
    """Predicted class (E, N*Q) of every query row, by logistic regression fitted on each episode's supports.

    `features` (M, D) float32; `support_rows` (E, N, K) and `query_rows` (E, N, Q) index its rows.
    """
    n_episodes, ways, shots = support_rows.shape
    n, dim = ways * shots, features.shape[1]
    raw = dim <= n  # few dimensions: solve on the centred features themselves
    coords = torch.empty(n_episodes, n, dim if raw else n, dtype=torch.float64)
    gather = _Gather(features.float().contiguous())

    def gather_support(start: int, stop: int, worker: int) -> None:
        support = gather(support_rows, start, stop, worker)
        # Centred before the product: nearly parallel features would lose their differences to rounding in a
        # Gram matrix centred afterwards.
        centred = support - support.mean(1, keepdim=True)
        coords[start:stop] = centred if raw else centred @ centred.transpose(1, 2)

    _parallel(gather_support, n_episodes, _PIECE_EPISODES)
    labels = episode_targets(ways, shots)
    combine = torch.empty(n_episodes, n if not raw else dim, ways, dtype=torch.float32)
    offset = torch.empty(n_episodes, ways, dtype=torch.float32)

    def solve(start: int, stop: int, worker: int) -> None:
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

    def predict(start: int, stop: int, worker: int) -> None:
        # logits = (q - m) W + c, with W = (S - m)^T A = S^T A - m^T 1^T A: neither q - m nor S - m is formed.
        support = gather(support_rows, start, stop, worker)
        mean = support.mean(1, keepdim=True)
        if raw:
            weights = combine[start:stop]
        else:
            mix = combine[start:stop]
            weights = torch.baddbmm(support.transpose(1, 2) @ mix, mean.transpose(1, 2), mix.sum(1, keepdim=True),
                                    alpha=-1.0)
        shift = offset[start:stop].unsqueeze(1) - mean @ weights
        logits = torch.baddbmm(shift, gather(query_rows, start, stop, worker), weights)
        predicted[start:stop] = logits.argmax(dim=2)

    _parallel(predict, n_episodes, _PIECE_EPISODES)
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
