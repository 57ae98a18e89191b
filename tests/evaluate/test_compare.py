"""Paired comparison of two result records, and `fewshot compare`."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fewshot.cli import main
from fewshot.errors import FewshotError
from fewshot.evaluate.compare import compare_records, format_comparison
from fewshot.results.records import make_record, write_record

A = [0.8, 0.6, 1.0, 0.4, 0.6, 0.8]
B = [0.6, 0.6, 0.8, 0.2, 0.4, 1.0]
META = {"ways": 5, "shots": 1, "queries": 15, "dataset": "omniglot", "split": "test", "checksum": "e" * 64, "seed": 0}


def record(method: str, accuracies, meta: dict = META) -> dict:
    return make_record(method, np.asarray(accuracies), meta, "s" * 64, {"seed": 0})


def test_compare_records_pairs_episodes():
    c = compare_records(record("protonet", A), record("siamese", B))
    assert (c.method_a, c.method_b, c.setting, c.dataset) == ("protonet", "siamese", "5w1s", "omniglot")
    assert c.mean_a == pytest.approx(70.0) and c.mean_b == pytest.approx(60.0)
    assert c.difference.mean == pytest.approx(10.0)
    assert c.difference.p_ttest == pytest.approx(stats.ttest_rel(A, B).pvalue)
    assert c.difference.p_wilcoxon == pytest.approx(stats.wilcoxon(A, B).pvalue)


def test_different_episodes_are_refused():
    other = dict(META, checksum="f" * 64)
    with pytest.raises(FewshotError, match="different episodes .*eeeeeeee and ffffffff"):
        compare_records(record("protonet", A), record("siamese", B, other))


def test_different_episode_counts_are_refused():
    b = record("siamese", B)
    b["per_episode_accuracy"] = b["per_episode_accuracy"][:5]
    with pytest.raises(FewshotError, match="holds 6 per-episode accuracies but .* holds 5"):
        compare_records(record("protonet", A), b)


def test_format_comparison_exact_text():
    text = format_comparison(compare_records(record("protonet", A), record("siamese", B)))
    normal = 1.96 * math.sqrt(1400 / 6) / math.sqrt(6)  # 12.22
    student = stats.t.ppf(0.975, 5) * math.sqrt(280) / math.sqrt(6)  # 17.56
    assert f"{normal:.2f}" == "12.22" and f"{student:.2f}" == "17.56"
    assert text == (
        "omniglot 5w1s, 6 paired episodes\n"
        "A protonet (seed 0): 70.00\n"
        "B siamese (seed 0): 60.00\n"
        "A - B: +10.00 percent points\n"
        "  95% CI normal (1.96*std/sqrt(n), ddof 0): +- 12.22  [-2.22, 22.22]\n"
        "  95% CI Student-t (ddof 1):               +- 17.56  [-7.56, 27.56]\n"
        "  paired t-test p = 0.2031; Wilcoxon signed-rank p = 0.25\n"
    )


def test_a_record_without_seed_shows_none():
    pixels = make_record("pixels", np.asarray(B), META, "s" * 64, {"backbone": "pixels"})
    assert "\nB pixels: 60.00\n" in format_comparison(compare_records(record("protonet", A), pixels))


def test_identical_records_compare_with_p_one():
    c = compare_records(record("a", A), record("b", A))
    assert c.difference.mean == 0.0 and c.difference.p_ttest == 1.0 and c.difference.p_wilcoxon == 1.0


def test_compare_command(tmp_path, capsys):
    a = write_record(record("protonet", A), tmp_path / "a.json")
    b = write_record(record("siamese", B), tmp_path / "b.json")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "A - B: +10.00 percent points" in out and "paired t-test p = 0.2031" in out
    c = write_record(record("siamese", B, dict(META, checksum="f" * 64)), tmp_path / "c.json")
    assert main(["compare", str(a), str(c)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot: error: ") and "different episodes" in err and err.count("\n") == 1
