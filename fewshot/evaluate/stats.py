"""Confidence intervals for per-episode accuracies (in percent)."""
from __future__ import annotations

import math

import numpy as np


def mean_ci95(accuracies: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean, ci95) in percent by the field's convention: 1.96 * std / sqrt(n), std with ddof 0."""
    acc = np.asarray(accuracies, dtype=np.float64) * 100.0
    if acc.size == 0:
        raise ValueError("no accuracies to summarise")
    return float(acc.mean()), float(1.96 * acc.std(ddof=0) / math.sqrt(acc.size))


def mean_ci95_t(accuracies: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean, half-width) in percent of the Student-t 95% interval on the standard error (ddof 1)."""
    from scipy import stats

    acc = np.asarray(accuracies, dtype=np.float64) * 100.0
    if acc.size < 2:
        return float(acc.mean()), float("nan")
    sem = acc.std(ddof=1) / math.sqrt(acc.size)
    return float(acc.mean()), float(stats.t.ppf(0.975, acc.size - 1) * sem)
