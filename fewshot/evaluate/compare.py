"""Paired comparison of two result records evaluated on the same episodes.

Per-episode differences A - B remove the episode-to-episode variation both methods share, so their
interval is much tighter than the two records' own intervals (docs/protocol). The records must come from
the same episode file: same episodes checksum, same number of episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot.errors import FewshotError
from fewshot.stats import PairedDifference, mean_ci95, paired_difference


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


def pair_records(a: list[dict], b: list[dict], where_a: str = "A", where_b: str = "B") -> list[tuple[dict, dict]]:
    """Pairs (a, b) of records on the same episode file, for comparing two folders of records.

    On each episode file both sides have records for: one record each is a pair; otherwise records pair by
    method and seed (the same method measured twice, e.g. before and after a change). Settings order the
    pairs. An episode file with records on both sides that cannot be paired so is a one-line error.
    """
    def by_file(records: list[dict]) -> dict[str, list[dict]]:
        groups: dict[str, list[dict]] = {}
        for r in records:
            groups.setdefault(r["provenance"]["episodes_checksum"], []).append(r)
        return groups

    left, right = by_file(a), by_file(b)
    pairs = []
    for checksum in left.keys() & right.keys():
        ra, rb = left[checksum], right[checksum]
        if len(ra) == 1 and len(rb) == 1:
            pairs.append((ra[0], rb[0]))
            continue
        key = lambda r: (r["method"], r["provenance"].get("seed"))  # noqa: E731
        keyed_b = {}
        for r in rb:
            keyed_b.setdefault(key(r), []).append(r)
        matched = [(r, keyed_b[key(r)][0]) for r in ra if len(keyed_b.get(key(r), [])) == 1]
        if not matched:
            setting = ra[0]["setting"]
            raise FewshotError(
                f"{where_a} holds {len(ra)} and {where_b} {len(rb)} records on the {setting} episode file "
                f"{checksum[:8]} with no method (and seed) in common ({', '.join(sorted({r['method'] for r in ra}))} "
                f"against {', '.join(sorted({r['method'] for r in rb}))}); compare two record files instead")
        pairs += matched
    if not pairs:
        raise FewshotError(f"no record of {where_a} was evaluated on the same episode file as a record of {where_b}; "
                           "a paired comparison needs both evaluated on the same episodes")
    return sorted(pairs, key=lambda pair: (pair[0]["dataset"], pair[0]["ways"], pair[0]["shots"], pair[0]["method"]))


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
