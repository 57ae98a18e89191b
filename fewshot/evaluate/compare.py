"""Paired comparison of two result records evaluated on the same episodes.

Per-episode differences A - B remove the episode-to-episode variation both methods share, so their
interval is much tighter than the two records' own intervals (docs/protocol). The records must come from
the same episode file: same episodes checksum, same number of episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot.errors import FewshotError
from fewshot.evaluate.stats import PairedDifference, mean_ci95, paired_difference


def _name(record: dict) -> str:
    return record.get("_path") or f"record of {record.get('method')!r}"


def check_same_episodes(a: dict, b: dict) -> None:
    """Raise FewshotError unless records `a` and `b` were measured on the same episodes."""
    ca, cb = a["provenance"]["episodes_checksum"], b["provenance"]["episodes_checksum"]
    if ca != cb:
        raise FewshotError(
            f"{_name(a)} and {_name(b)} were evaluated on different episodes (checksums {ca[:8]} and {cb[:8]}); "
            "a paired comparison needs both evaluated on the same episode file"
        )
    na, nb = len(a["per_episode_accuracy"]), len(b["per_episode_accuracy"])
    if na != nb:
        raise FewshotError(f"{_name(a)} holds {na} per-episode accuracies but {_name(b)} holds {nb}; "
                           "re-evaluate both on the same episode file")


@dataclass(frozen=True)
class Comparison:
    method_a: str
    method_b: str
    setting: str
    dataset: str
    mean_a: float
    mean_b: float
    difference: PairedDifference
    seed_a: int | None = None
    seed_b: int | None = None
    head_a: str = "nearest_prototype"
    head_b: str = "nearest_prototype"


def compare_records(a: dict, b: dict) -> Comparison:
    """Paired difference A - B (percent points) of two records on identical episodes (two heads on one
    run's embeddings, or two methods)."""
    from fewshot.results.records import record_head

    check_same_episodes(a, b)
    acc_a = np.asarray(a["per_episode_accuracy"], dtype=np.float64)
    acc_b = np.asarray(b["per_episode_accuracy"], dtype=np.float64)
    return Comparison(a["method"], b["method"], a["setting"], a["dataset"], mean_ci95(acc_a)[0],
                      mean_ci95(acc_b)[0], paired_difference(acc_a, acc_b), a["provenance"].get("seed"),
                      b["provenance"].get("seed"), record_head(a)["label"], record_head(b)["label"])


def format_comparison(comparison: Comparison, decimals: int = 2) -> str:
    c, d = comparison, comparison.difference
    f = f".{decimals}f"
    seed_a = "" if c.seed_a is None else f" (seed {c.seed_a})"
    seed_b = "" if c.seed_b is None else f" (seed {c.seed_b})"
    if c.head_a != c.head_b:  # two heads (on one run's embeddings, say): name them
        seed_a += f" [head {c.head_a}]"
        seed_b += f" [head {c.head_b}]"
    return "\n".join([
        f"{c.dataset} {c.setting}, {d.n} paired episodes",
        f"A {c.method_a}{seed_a}: {c.mean_a:{f}}",
        f"B {c.method_b}{seed_b}: {c.mean_b:{f}}",
        f"A - B: {d.mean:+{f}} percent points",
        f"  95% CI normal (1.96*std/sqrt(n), ddof 0): +- {d.ci95:{f}}  [{d.mean - d.ci95:{f}}, {d.mean + d.ci95:{f}}]",
        f"  95% CI Student-t (ddof 1):               +- {d.ci95_t:{f}}  [{d.mean - d.ci95_t:{f}}, {d.mean + d.ci95_t:{f}}]",
        f"  paired t-test p = {d.p_ttest:.4g}; Wilcoxon signed-rank p = {d.p_wilcoxon:.4g}",
    ]) + "\n"
