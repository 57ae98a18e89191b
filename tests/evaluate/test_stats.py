"""Intervals (normal and Student-t), seed intervals and paired tests, against hand values and scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fewshot.stats import (mean_ci95, mean_ci95_t, mean_interval, paired_difference, seed_interval)

# Per-episode accuracies of two methods on the same six episodes.
A = np.array([0.8, 0.6, 1.0, 0.4, 0.6, 0.8])
B = np.array([0.6, 0.6, 0.8, 0.2, 0.4, 1.0])


def test_normal_interval_by_hand():
    # mean 75; std ddof 0 = sqrt(0.1875) = 43.30 points; 1.96 * 43.30 / sqrt(4) = 42.435
    mean, half = mean_ci95([1, 0, 1, 1])
    assert mean == pytest.approx(75.0)
    assert half == pytest.approx(1.96 * math.sqrt(0.1875) * 100 / 2) and half == pytest.approx(42.4352, abs=1e-4)


def test_student_t_interval_by_hand():
    # std ddof 1 = 50 points, sem 25, t(0.975, 3) = 3.182446
    mean, half = mean_ci95_t([1, 0, 1, 1])
    assert mean == pytest.approx(75.0)
    assert half == pytest.approx(3.182446305 * 25.0, rel=1e-8)


def test_t_interval_matches_scipy():
    low, high = stats.t.interval(0.95, len(A) - 1, loc=A.mean() * 100, scale=stats.sem(A * 100))
    mean, half = mean_ci95_t(A)
    assert mean - half == pytest.approx(low) and mean + half == pytest.approx(high)


def test_interval_rule_dispatch():
    assert mean_interval(A, "normal") == mean_ci95(A)
    assert mean_interval(A, "t") == mean_ci95_t(A)
    with pytest.raises(ValueError, match="unknown interval rule"):
        mean_interval(A, "bootstrap")


def test_t_interval_of_one_value_is_undefined_and_of_none_an_error():
    mean, half = mean_ci95_t([0.5])
    assert mean == 50.0 and math.isnan(half)
    with pytest.raises(ValueError):
        mean_ci95_t([])


def test_seed_interval_is_student_t_on_seed_means():
    # seed means 70, 72, 74: std ddof 1 = 2, sem = 2 / sqrt 3, t(0.975, 2) = 4.302653
    mean, half = seed_interval([70.0, 72.0, 74.0])
    assert mean == pytest.approx(72.0)
    assert half == pytest.approx(4.302652730 * 2 / math.sqrt(3), rel=1e-8) and half == pytest.approx(4.9683, abs=1e-4)


def test_paired_difference_by_hand_and_against_scipy():
    d = paired_difference(A, B)
    # differences (points): 20, 0, 20, 20, 20, -20: mean 10; squared deviations sum to 1400,
    # so std ddof 0 = sqrt(1400 / 6) = 15.275 and ddof 1 = sqrt(280) = 16.733
    assert d.n == 6
    assert d.mean == pytest.approx(10.0)
    assert d.ci95 == pytest.approx(1.96 * math.sqrt(1400 / 6) / math.sqrt(6))
    # t(0.975, 5) = 2.570582
    assert d.ci95_t == pytest.approx(2.570581836 * math.sqrt(280) / math.sqrt(6), rel=1e-8)
    assert d.p_ttest == pytest.approx(stats.ttest_rel(A, B).pvalue)
    # t = 10 / (16.733 / sqrt 6) = 1.4639 on 5 degrees of freedom
    assert d.p_ttest == pytest.approx(2 * stats.t.sf(10 / (math.sqrt(280) / math.sqrt(6)), 5))
    assert d.p_ttest == pytest.approx(0.20311, abs=1e-5)
    assert d.p_wilcoxon == pytest.approx(stats.wilcoxon(A, B).pvalue)
    assert d.half_width("normal") == d.ci95 and d.half_width("t") == d.ci95_t


def test_paired_difference_is_antisymmetric():
    ab, ba = paired_difference(A, B), paired_difference(B, A)
    assert ab.mean == pytest.approx(-ba.mean)
    assert (ab.ci95, ab.p_ttest, ab.p_wilcoxon) == pytest.approx((ba.ci95, ba.p_ttest, ba.p_wilcoxon))


def test_paired_difference_on_a_larger_random_vector_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 16, 600) / 15
    b = np.clip(a + rng.integers(-2, 3, 600) / 15, 0, 1)
    d = paired_difference(a, b)
    assert d.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    assert d.p_wilcoxon == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-10)
    assert d.mean == pytest.approx((a - b).mean() * 100)


def test_identical_accuracies_give_p_one_not_nan():
    d = paired_difference(A, A.copy())
    assert (d.mean, d.ci95, d.ci95_t) == (0.0, 0.0, 0.0)
    assert d.p_ttest == 1.0 and d.p_wilcoxon == 1.0


def test_a_constant_nonzero_difference_is_certain():
    d = paired_difference(np.full(10, 0.75), np.full(10, 0.5))  # exact in binary: every difference is 0.25
    assert (d.mean, d.ci95, d.ci95_t) == (25.0, 0.0, 0.0)
    assert d.p_ttest == 0.0  # t is infinite
    # all ten signed ranks positive: exact two-sided p = 2 / 2**10
    assert d.p_wilcoxon == pytest.approx(2 / 2**10)


def test_mismatched_vectors_are_refused():
    with pytest.raises(ValueError, match="one length"):
        paired_difference([0.5, 0.5], [0.5])
    with pytest.raises(ValueError):
        paired_difference([], [])


def test_wilcoxon_can_be_skipped():
    d = paired_difference(A, B, wilcoxon=False)
    assert math.isnan(d.p_wilcoxon) and d.p_ttest == paired_difference(A, B).p_ttest
