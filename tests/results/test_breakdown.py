"""Accuracy by ways and by shots, Lake's error table, and the column order of protocol settings."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.errors import FewshotError
from fewshot.evaluate.lake import format_lake_table, lake_error_fields
from fewshot.results.breakdown import breakdown_frame, format_breakdown
from fewshot.results.records import make_record
from fewshot.results.tables import _setting_key

MD = {"ways": None, "shots": None, "queries": None, "dataset": "omniglot", "split": "test", "checksum": "m" * 64,
      "seed": 0, "setting": "meta-dataset-bilevel"}


def _md_record(method: str, acc) -> dict:
    extra = {"protocol": "meta-dataset", "per_episode_ways": [5, 7, 12, 14, 30, 48],
             "per_episode_shots": [1.0, 1.5, 4.0, 12.0, 25.5, 120.0]}
    return make_record(method, np.array(acc), MD, "s" * 64, extra=extra)


def test_bins_and_their_intervals_by_hand():
    record = _md_record("protonet", [1.0, 0.5, 0.8, 0.6, 0.4, 0.2])
    ways = breakdown_frame([record], "ways").set_index("bin")
    # Six distinct ways: each value is its own bin while there are at most 12.
    assert list(ways.index) == ["5", "7", "12", "14", "30", "48"] and (ways["n"] == 1).all()
    # Thirteen distinct ways: bins 5 wide.
    many = dict(record, per_episode_ways=[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 49],
                per_episode_accuracy=[1.0, 0.5] * 6 + [1.0], n_episodes=13)
    frame = breakdown_frame([many], "ways").set_index("bin")
    assert list(frame.index) == ["5-9", "10-14", "15-19", "45-49"]
    assert frame.loc["5-9", "mean"] == pytest.approx(100 * (1.0 + 0.5 + 1.0 + 0.5 + 1.0) / 5)
    half = 1.96 * np.std([100, 50, 100, 50, 100]) / np.sqrt(5)
    assert frame.loc["5-9", "half"] == pytest.approx(half) and frame.loc["5-9", "n"] == 5
    shots = breakdown_frame([record], "shots").set_index("bin")
    assert list(shots.index) == ["1", "3-4", "10-19", "20-49", "100+"]
    assert shots.loc["1", "n"] == 2 and shots.loc["1", "mean"] == pytest.approx(75.0)  # 1.0 and 1.5 shots
    text = format_breakdown([record], "shots")  # 1.96 * std(100, 50) / sqrt(2) = 34.65
    assert "| protonet | meta-dataset-bilevel | 75.00 +- 34.65 (2) | 80.00 +- 0.00 (1) |" in text


def test_fixed_records_break_down_into_their_one_setting_and_seeds_are_averaged():
    one = {"ways": 5, "shots": 1, "queries": 15, "dataset": "omniglot", "split": "test", "checksum": "1" * 64}
    a = make_record("protonet", np.array([1.0, 0.5]), one, "s" * 64, {"seed": 0})
    b = make_record("protonet", np.array([0.5, 0.5]), one, "s" * 64, {"seed": 1})
    frame = breakdown_frame([a, b], "ways")
    assert frame["bin"].tolist() == ["5"] and frame["mean"].iloc[0] == pytest.approx(62.5)
    with pytest.raises(FewshotError, match="choose ways or shots"):
        breakdown_frame([a], "queries")


def test_lake_table_prints_ours_beside_the_published_figures():
    meta = {"ways": 20, "shots": 1, "queries": 1, "dataset": "omniglot-lake-runs", "split": "runs",
            "checksum": "l" * 64, "setting": "20w1s-lake-runs"}
    acc = np.array([0.95] * 10 + [0.85] * 10)
    record = make_record("protonet", acc, meta, "s" * 64, extra={"protocol": "lake-runs", **lake_error_fields(acc)})
    assert record["error_rate"] == pytest.approx(10.0) and record["per_run_error"][:2] == [5.0, 5.0]
    text = format_lake_table([record])
    assert "| protonet | 10.0 | 90.0 | this run (20 runs) |" in text
    for anchor in ("| people (published) | 4.5 |", "| Bayesian Program Learning (published) | 3.3 |",
                   "| Modified Hausdorff distance (published) | 38.8 |", "Siamese net (published) | 8.0 | 92.0"):
        assert anchor in text
    with pytest.raises(FewshotError, match="no records of Lake's runs"):
        format_lake_table([_md_record("x", [1, 1, 1, 1, 1, 1])])


def test_protocol_settings_sort_after_plain_ones():
    settings = ["meta-dataset-none", "20w1s-within-parent", "20w1s", "5w5s", "20w1s-lake-runs", "5w1s"]
    assert sorted(settings, key=_setting_key) == ["5w1s", "5w5s", "20w1s", "20w1s-lake-runs", "20w1s-within-parent",
                                                  "meta-dataset-none"]
