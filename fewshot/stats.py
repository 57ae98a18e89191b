"""Confidence intervals and paired tests for per-episode accuracies (in percent).

Two interval rules are in use in the field (see docs/protocol): the "normal" one, 1.96 * std / sqrt(n)
with std ddof 0 (ProtoNets, Closer Look, MetaOptNet, FEAT), and a Student-t interval on the standard
error, ddof 1 (LibFewShot, Meta-Baseline). With 600+ episodes they agree to the second decimal; with a
handful of seeds they do not, so seed-level intervals always use the t rule.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

CI_RULES = ("normal", "t")
CI_DESCRIPTIONS = {
    "normal": "normal 95% CI: 1.96*std/sqrt(n), std ddof 0",
    "t": "Student-t 95% CI: t(0.975, n-1)*std/sqrt(n), std ddof 1",
}


def mean_ci95(accuracies: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean, ci95) in percent by the field's convention: 1.96 * std / sqrt(n), std with ddof 0."""
    acc = np.asarray(accuracies, dtype=np.float64) * 100.0
    if acc.size == 0:
        raise ValueError("no accuracies to summarise")
    return float(acc.mean()), float(1.96 * acc.std(ddof=0) / math.sqrt(acc.size))


def format_interval(mean: float, half: float, decimals: int = 2, pm: str = "+-") -> str:
    """`mean +- half` rounded once, to `decimals`: every verb that prints an interval prints it so (eval, bench,
    ablate, table), from the same full-precision numbers, so they never disagree in the last digit."""
    return f"{mean:.{decimals}f} {pm} {half:.{decimals}f}"


def mean_ci95_t(accuracies: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean, half-width) in percent of the Student-t 95% interval on the standard error (ddof 1)."""
    from scipy import stats

    acc = np.asarray(accuracies, dtype=np.float64) * 100.0
    if acc.size == 0:
        raise ValueError("no accuracies to summarise")
    if acc.size < 2:
        return float(acc.mean()), float("nan")
    sem = acc.std(ddof=1) / math.sqrt(acc.size)
    return float(acc.mean()), float(stats.t.ppf(0.975, acc.size - 1) * sem)


def mean_interval(accuracies: np.ndarray | list[float], ci: str = "normal") -> tuple[float, float]:
    """(mean, 95% half-width) in percent of fractions in [0, 1] by rule `ci` ("normal" or "t")."""
    if ci == "normal":
        return mean_ci95(accuracies)
    if ci == "t":
        return mean_ci95_t(accuracies)
    raise ValueError(f"unknown interval rule {ci!r}; choose one of {CI_RULES}")


def seed_interval(seed_means_percent: np.ndarray | list[float]) -> tuple[float, float]:
    """(mean, half-width) over per-seed mean accuracies already in percent: Student-t, ddof 1.

    A few seeds is a tiny sample, where 1.96 and ddof 0 would understate the spread several-fold.
    """
    means = np.asarray(seed_means_percent, dtype=np.float64)
    mean, half = mean_ci95_t(means / 100.0)
    return mean, half


@dataclass(frozen=True)
class PairedDifference:
    """Per-episode A - B on the same episodes, in percent points."""

    n: int
    mean: float
    ci95: float  # normal rule, ddof 0
    ci95_t: float  # Student-t rule, ddof 1
    p_ttest: float  # scipy.stats.ttest_rel, two-sided
    p_wilcoxon: float  # scipy.stats.wilcoxon, two-sided, zero differences dropped (zero_method="wilcox")

    def half_width(self, ci: str = "normal") -> float:
        if ci not in CI_RULES:
            raise ValueError(f"unknown interval rule {ci!r}; choose one of {CI_RULES}")
        return self.ci95 if ci == "normal" else self.ci95_t


def paired_difference(a: np.ndarray | list[float], b: np.ndarray | list[float],
                      wilcoxon: bool = True) -> PairedDifference:
    """Paired comparison of per-episode accuracies (fractions) measured on the same episodes.

    When every difference is zero both tests are undefined (scipy gives nan or warns); the two methods
    are then indistinguishable on these episodes and both p-values are 1. `wilcoxon=False` skips that
    test (p_wilcoxon nan): on few tied episodes scipy computes it by permutation, thousands of times
    slower than the t-test, and tables need only the t-test.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired accuracies must be two vectors of one length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("no accuracies to compare")
    diff = a - b
    mean, ci_normal = mean_ci95(diff)
    _, ci_t = mean_ci95_t(diff)
    if not np.any(diff):
        return PairedDifference(int(a.size), mean, ci_normal, ci_t, 1.0, 1.0)
    with warnings.catch_warnings():
        # Constant differences make the t statistic infinite (p = 0, correctly) with a precision warning.
        warnings.simplefilter("ignore", RuntimeWarning)
        p_t = float(stats.ttest_rel(a, b).pvalue) if a.size > 1 else float("nan")
        p_w = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue) if wilcoxon else float("nan")
    return PairedDifference(int(a.size), mean, ci_normal, ci_t, p_t, p_w)
