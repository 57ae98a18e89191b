"""Lake et al.'s official one-shot metric on the 20 runs, and the published figures printed beside ours.

Lake's `demo_classification.py` scores a run as the percentage of its 20 test items misclassified and
reports the mean over the 20 runs; with 20 queries a run that is 100 - mean per-episode accuracy.
"""
from __future__ import annotations

import numpy as np

from fewshot.errors import FewshotError

# Published error rates (%) on the 20 runs (within-alphabet 20-way 1-shot, evaluation alphabets), quoted.
# Checked as far as this project could: 38.8 is re-measured on all_runs.zip by tests/data/test_lake_runs.py
# (Lake's Modified Hausdorff classifier); 92.0% for Koch et al. was confirmed only through a replication
# that quotes it (the paper's table was not reachable); 4.5 and 3.3 are as quoted in Lake et al. 2015.
LAKE_ANCHORS: tuple[tuple[str, float, str], ...] = (
    ("people", 4.5, "Lake et al. 2015, Science 350:1332"),
    ("Bayesian Program Learning", 3.3, "Lake et al. 2015"),
    ("Koch et al. 2015 convolutional Siamese net", 8.0, "Koch, Zemel & Salakhutdinov 2015 (92.0% accuracy)"),
    ("Modified Hausdorff distance", 38.8, "Lake et al. 2015; 38.8 re-measured on all_runs.zip (tests)"),
)


def lake_error(accuracies) -> tuple[float, np.ndarray]:
    """(mean error %, error % of each run) from per-run accuracies in [0, 1]."""
    errors = 100.0 * (1.0 - np.asarray(accuracies, dtype=np.float64))
    return float(errors.mean()), errors


def lake_error_fields(accuracies) -> dict:
    mean, per_run = lake_error(accuracies)
    return {"error_rate": round(mean, 4), "per_run_error": [round(float(e), 4) for e in per_run],
            "metric": "Lake et al. 2015 error rate (%): mean over the 20 runs of the share of test items misclassified"}


def format_lake_table(records: list[dict], decimals: int = 1) -> str:
    """Markdown: our error rates on Lake's runs (best first) above the published anchors."""
    ours = [r for r in records if r.get("protocol") == "lake-runs"]
    if not ours:
        raise FewshotError("no records of Lake's runs (protocol lake-runs) among these results; evaluate on a file "
                           "made with `fewshot episodes --protocol lake-runs`")
    checksums = {r["provenance"]["episodes_checksum"] for r in ours}
    if len(checksums) > 1:
        raise FewshotError("these records of Lake's runs were measured on different episode files; table one set")
    lines = ["| method | error % (20 runs) | accuracy % | source |", "|---|---|---|---|"]
    for r in sorted(ours, key=lambda r: r["error_rate"]):
        lines.append(f"| {r['method']} | {r['error_rate']:.{decimals}f} | {100 - r['error_rate']:.{decimals}f} | "
                     f"this run ({r['n_episodes']} runs) |")
    for name, error, source in LAKE_ANCHORS:
        lines.append(f"| {name} (published) | {error:.1f} | {100 - error:.1f} | {source} |")
    return "\n".join(lines) + ("\n\nTable: Lake et al.'s 20 within-alphabet 20-way 1-shot runs, error rate as Lake's "
                               "demo_classification.py computes it (mean over runs of the share of misclassified "
                               "test items). Published rows are quoted, not rerun.\n")
