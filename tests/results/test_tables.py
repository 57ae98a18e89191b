"""Tables: exact md / csv / latex text on fixture records, seeds, ties, baselines, refusals."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.cli import main
from fewshot.errors import FewshotError
from fewshot.results.records import make_record, write_record
from fewshot.results.tables import format_table, latex_escape, summarise

ONE = {"ways": 5, "shots": 1, "queries": 15, "dataset": "omniglot", "split": "test", "checksum": "1" * 64, "seed": 0}
FIVE = dict(ONE, shots=5, checksum="5" * 64)
# Per-episode accuracies (5w1s, 5w5s) on four episodes; protonet has two seeds.
ACC = {
    ("protonet", 0): ([1.0, 0.8, 0.6, 1.0], [1.0, 1.0, 0.8, 1.0]),
    ("protonet", 1): ([0.8, 0.8, 0.6, 1.0], [1.0, 1.0, 1.0, 1.0]),
    ("siamese", 0): ([0.6, 0.4, 0.6, 0.8], [1.0, 0.8, 0.8, 1.0]),
    ("pixels", None): ([0.2, 0.4, 0.2, 0.4], [0.4, 0.6, 0.4, 0.6]),
}


def fixture_records(acc: dict = ACC) -> list[dict]:
    records = []
    for (method, seed), (one, five) in acc.items():
        config = None if seed is None else {"seed": seed}
        records.append(make_record(method, np.array(one), ONE, "s" * 64, config))
        records.append(make_record(method, np.array(five), FIVE, "s" * 64, config))
    return records


MARKDOWN = (
    '| method | 5w1s | 5w5s |\n'
    '|---|---|---|\n'
    '| protonet (2 seeds) | **82.50 +- 31.77** | **97.50 +- 31.77** |\n'
    '| siamese | **60.00 +- 13.86** | **90.00 +- 9.80** |\n'
    '| pixels | 30.00 +- 9.80 | 50.00 +- 9.80 |\n'
    '\n'
    'Table: omniglot test accuracy (%): mean +- normal 95% CI: 1.96*std/sqrt(n), std ddof 0, over 4 episodes a column. Rows with several seeds: mean over seeds +- Student-t 95% CI over the seed means (ddof 1). Bold: best mean in the column and every row whose paired difference from it is not significant (paired t-test on the same episodes, p >= 0.05).\n'
)

CSV = (
    'method,seeds,5w1s mean,5w1s ci95,5w1s bold,5w1s vs siamese,5w1s vs siamese ci95,5w1s vs siamese p,5w5s mean,5w5s ci95,5w5s bold,5w5s vs siamese,5w5s vs siamese ci95,5w5s vs siamese p\n'
    'protonet (2 seeds),2,82.5,31.77,1,22.5,14.49,0.07799,97.5,31.77,1,7.5,8.13,0.2152\n'
    'siamese,1,60.0,13.86,1,,,,90.0,9.8,1,,,\n'
    'pixels,1,30.0,9.8,0,-30.0,16.97,0.05767,50.0,9.8,0,-40.0,13.86,0.01628\n'
)

LATEX = (
    '\\begin{table}[ht]\n'
    '\\centering\n'
    "\\caption{omniglot test accuracy (\\%): mean $\\pm$ normal 95\\% CI: 1.96*std/sqrt(n), std ddof 0, over 4 episodes a column. Rows with several seeds: mean over seeds $\\pm$ Student-t 95\\% CI over the seed means (ddof 1). Bold: best mean in the column and every row whose paired difference from it is not significant (paired t-test on the same episodes, p $\\geq$ 0.05). Columns 'vs siamese': paired difference from siamese on the same episodes, mean $\\pm$ the normal 95\\% CI of the differences; * p $<$ 0.05 (paired t-test).}\n"
    '\\begin{tabular}{lcccc}\n'
    '\\toprule\n'
    'method & 5w1s & 5w1s vs siamese & 5w5s & 5w5s vs siamese \\\\\n'
    '\\midrule\n'
    'protonet (2 seeds) & \\textbf{82.50 $\\pm$ 31.77} & +22.50 $\\pm$ 14.49 & \\textbf{97.50 $\\pm$ 31.77} & +7.50 $\\pm$ 8.13 \\\\\n'
    'siamese & \\textbf{60.00 $\\pm$ 13.86} & -- & \\textbf{90.00 $\\pm$ 9.80} & -- \\\\\n'
    '\\midrule\n'
    'pixels & 30.00 $\\pm$ 9.80 & $-$30.00 $\\pm$ 16.97 & 50.00 $\\pm$ 9.80 & $-$40.00 $\\pm$ 13.86$^{*}$ \\\\\n'
    '\\bottomrule\n'
    '\\end{tabular}\n'
    '\\end{table}\n'
)

PER_SEED_T = (
    '| method | 5w1s | 5w1s vs siamese | 5w5s | 5w5s vs siamese |\n'
    '|---|---|---|---|---|\n'
    '| protonet (seed 0) | **85.00 +- 30.47** | +25.00 +- 30.47 | **95.00 +- 15.91** | +5.00 +- 15.91 |\n'
    '| protonet (seed 1) | **80.00 +- 25.98** | +20.00 +- 25.98 | **100.00 +- 0.00** | +10.00 +- 18.37 |\n'
    '| siamese (seed 0) | **60.00 +- 25.98** | - | **90.00 +- 18.37** | - |\n'
    '| pixels | 30.00 +- 18.37 | -30.00 +- 31.82 | 50.00 +- 18.37 | -40.00 +- 25.98* |\n'
    '\n'
    "Table: omniglot test accuracy (%): mean +- Student-t 95% CI: t(0.975, n-1)*std/sqrt(n), std ddof 1, over 4 episodes a column. Bold: best mean in the column and every row whose paired difference from it is not significant (paired t-test on the same episodes, p >= 0.05). Columns 'vs siamese': paired difference from siamese on the same episodes, mean +- the t 95% CI of the differences; * p < 0.05 (paired t-test).\n"
)


def test_markdown_exact():
    assert format_table(fixture_records(), "md") == MARKDOWN


def test_csv_exact_with_baseline():
    assert format_table(fixture_records(), "csv", baseline="siamese") == CSV


def test_latex_exact_with_baseline():
    assert format_table(fixture_records(), "latex", baseline="siamese") == LATEX


def test_per_seed_rows_with_t_intervals():
    assert format_table(fixture_records(), "md", baseline="siamese", ci="t", per_seed=True) == PER_SEED_T


def test_cells_by_hand():
    cells = summarise(fixture_records(), baseline="siamese").cells.set_index(["row", "column"])
    # siamese 5w1s: mean 60, std (ddof 0) 14.142 points, 1.96 * 14.142 / 2 = 13.859
    assert cells.loc[("siamese", "5w1s"), "mean"] == pytest.approx(60.0)
    assert cells.loc[("siamese", "5w1s"), "half"] == pytest.approx(1.96 * np.sqrt(200) / 2)
    # protonet 5w1s: seed means 85 and 80 -> 82.5 +- t(0.975, 1) * 3.5355 / sqrt 2 = 12.706 * 2.5
    assert cells.loc[("protonet", "5w1s"), "mean"] == pytest.approx(82.5)
    assert cells.loc[("protonet", "5w1s"), "half"] == pytest.approx(12.7062047 * 2.5)
    assert cells.loc[("protonet", "5w1s"), "n_seeds"] == 2
    # paired with siamese on the seed-averaged episodes: differences 30, 40, 0, 20 points -> mean 22.5
    assert cells.loc[("protonet", "5w1s"), "diff"] == pytest.approx(22.5)
    assert cells.loc[("protonet", "5w1s"), "diff_half"] == pytest.approx(1.96 * np.sqrt(218.75) / 2)
    # best and ties: pixels differs significantly from the best, siamese does not (p = 0.078)
    assert cells.loc[("protonet", "5w1s"), "best"]
    assert cells.loc[("siamese", "5w1s"), "tied"] and not cells.loc[("pixels", "5w1s"), "tied"]


def test_single_seed_table_like_the_demo():
    acc = {("protonet", 0): ACC[("protonet", 0)], ("pixels", None): ACC[("pixels", None)]}
    text = format_table(fixture_records(acc), "md", decimals=1)
    assert text.splitlines()[:4] == [
        "| method | 5w1s | 5w5s |",
        "|---|---|---|",
        "| protonet | **85.0 +- 16.3** | **95.0 +- 8.5** |",  # std 16.58: 1.96 * 16.58 / 2
        "| pixels | 30.0 +- 9.8 | 50.0 +- 9.8 |",
    ]
    assert "Rows with several seeds" not in text


def test_a_column_mixing_episode_sets_is_refused():
    records = fixture_records()
    records[2]["provenance"]["episodes_checksum"] = "9" * 64  # protonet seed 1, 5w1s
    with pytest.raises(FewshotError, match="column 5w1s mixes results measured on different episode sets"):
        format_table(records, "md")


def test_two_records_of_one_method_and_seed_are_refused():
    records = fixture_records()
    records[2]["provenance"]["seed"] = 0
    with pytest.raises(FewshotError, match="two results for method 'protonet' \\(seed 0\\) in column 5w1s"):
        format_table(records, "md")


def test_unknown_baseline_and_format_are_refused():
    with pytest.raises(FewshotError, match="--baseline 'maml' is not a method in these results"):
        format_table(fixture_records(), "md", baseline="maml")
    with pytest.raises(FewshotError, match="unknown table format 'html'"):
        format_table(fixture_records(), "html")


def test_several_datasets_name_their_columns():
    records = fixture_records({("protonet", 0): ACC[("protonet", 0)]})
    other = make_record("protonet", np.array([0.5, 0.5]), dict(ONE, dataset="synthetic", checksum="7" * 64), "t",
                        {"seed": 0})
    header = format_table(records + [other], "md").splitlines()[0]
    assert header == "| method | omniglot 5w1s | omniglot 5w5s | synthetic 5w1s |"


def test_missing_cells_and_latex_escaping():
    records = fixture_records({("proto_net", 0): ACC[("protonet", 0)], ("siamese", 0): ACC[("siamese", 0)]})
    records = [r for r in records if not (r["method"] == "siamese" and r["setting"] == "5w5s")]
    md = format_table(records, "md").splitlines()
    assert md[3] == "| siamese | **60.00 +- 13.86** | - |"  # tied with the best: paired p = 0.080
    latex = format_table(records, "latex")
    assert "proto\\_net & \\textbf{85.00 $\\pm$ 16.25} & \\textbf{95.00 $\\pm$ 8.49} \\\\" in latex
    assert "siamese & \\textbf{60.00 $\\pm$ 13.86} & -- \\\\" in latex
    assert latex_escape("a_b & 50% #1 {x} ~ ^ \\") == (
        "a\\_b \\& 50\\% \\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{}")


def test_order_puts_rows_as_given_and_pixels_last():
    data = summarise(fixture_records(), order=["siamese", "pixels", "protonet"])
    assert data.rows == ["siamese", "protonet", "pixels"]


def test_table_command(tmp_path, capsys):
    for record in fixture_records():
        write_record(record, tmp_path / "results")
    assert main(["table", str(tmp_path / "results"), "--format", "csv", "--baseline", "siamese"]) == 0
    assert capsys.readouterr().out == CSV
    assert main(["table", str(tmp_path / "results"), "--per-seed", "--ci", "t", "--baseline", "siamese"]) == 0
    assert capsys.readouterr().out == PER_SEED_T
