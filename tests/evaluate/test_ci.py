"""The field's 95% interval: 1.96 * std (ddof 0) / sqrt(n), in percent, on hand-computed values."""
from __future__ import annotations

import math

import pytest

from fewshot.stats import mean_ci95


def test_half_right_half_wrong():
    mean, ci95 = mean_ci95([1, 0, 1, 0])
    # std (ddof 0) = 50 points; 1.96 * 50 / sqrt(4) = 49.0
    assert mean == pytest.approx(50.0) and ci95 == pytest.approx(49.0)


def test_constant_accuracy_has_zero_width():
    assert mean_ci95([0.8, 0.8, 0.8]) == pytest.approx((80.0, 0.0))


def test_two_values():
    mean, ci95 = mean_ci95([0.5, 1.0])
    # mean 75, std 25, 1.96 * 25 / sqrt(2) = 34.648232...
    assert mean == pytest.approx(75.0)
    assert ci95 == pytest.approx(1.96 * 25 / math.sqrt(2)) and ci95 == pytest.approx(34.6482, abs=1e-4)


def test_no_accuracies_is_an_error():
    with pytest.raises(ValueError):
        mean_ci95([])
