"""Accuracy broken down by each episode's ways or shots (Meta-Dataset's episodes vary in both).

Ragged records keep `per_episode_ways` and `per_episode_shots` (support images a class, averaged over the
episode's classes); fixed records have one ways and shots for all episodes. Episodes are binned (ways:
each value when there are few, else bins 5 wide; shots: 1, 2, 3-4, 5-9, 10-19, 20-49, 50-99, 100+) and
each bin gets mean +- 1.96 * std / sqrt(n) (ddof 0) over its episodes. Several seeds of one method on the
same episodes are averaged episode by episode first, as in the main table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fewshot.errors import FewshotError
from fewshot.stats import mean_ci95

BY = ("ways", "shots")
_SHOT_EDGES = (1, 2, 3, 5, 10, 20, 50, 100)


def _per_episode(record: dict, by: str) -> np.ndarray:
    n = record["n_episodes"]
    values = record.get(f"per_episode_{by}")
    if values is None:
        if record.get(by) is None:
            raise FewshotError(f"record {record.get('_path', record['method'])} has no {by} to break down by")
        values = [record[by]] * n
    return np.asarray(values, dtype=np.float64)


def _bins(values: np.ndarray, by: str) -> tuple[np.ndarray, list[str], list[float]]:
    """(bin index of each value, bin labels, bin centres) in increasing order."""
    if by == "ways":
        distinct = np.unique(values)
        if len(distinct) <= 12:
            return np.searchsorted(distinct, values), [f"{int(v)}" for v in distinct], [float(v) for v in distinct]
        lows = np.arange(5 * int(values.min() // 5), int(values.max()) + 1, 5)
        labels = [f"{lo}-{lo + 4}" for lo in lows]
        return np.searchsorted(lows, values, side="right") - 1, labels, [lo + 2.0 for lo in lows]
    edges = np.asarray(_SHOT_EDGES, dtype=np.float64)
    index = np.searchsorted(edges, values, side="right") - 1
    labels = [f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(_SHOT_EDGES, _SHOT_EDGES[1:])]
    labels.append(f"{_SHOT_EDGES[-1]}+")
    centres = [(lo + hi - 1) / 2 for lo, hi in zip(_SHOT_EDGES, _SHOT_EDGES[1:])] + [float(_SHOT_EDGES[-1])]
    return np.clip(index, 0, len(labels) - 1), labels, centres


def breakdown_frame(records: list[dict], by: str) -> pd.DataFrame:
    """One row a (method, column, bin) present: mean, half (95% CI), n (episodes), centre (for plots)."""
    if by not in BY:
        raise FewshotError(f"--by {by!r}: choose ways or shots")
    if not records:
        raise FewshotError("no result records to break down")
    datasets = {r["dataset"] for r in records}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        column = r["setting"] if len(datasets) == 1 else f"{r['dataset']} {r['setting']}"
        groups.setdefault((r["method"], column), []).append(r)
    rows = []
    for (method, column), group in groups.items():
        if len({r["provenance"]["episodes_checksum"] for r in group}) > 1:
            raise FewshotError(f"method {method!r} in column {column} has results on different episode sets")
        accuracy = np.mean([np.asarray(r["per_episode_accuracy"], dtype=np.float64) for r in group], axis=0)
        index, labels, centres = _bins(_per_episode(group[0], by), by)
        for b, label in enumerate(labels):
            chosen = accuracy[index == b]
            if len(chosen) == 0:
                continue
            mean, half = mean_ci95(chosen)
            rows.append({"method": method, "column": column, "bin": label, "order": b, "centre": centres[b],
                         "mean": mean, "half": half, "n": int(len(chosen))})
    return pd.DataFrame(rows)


def format_breakdown(records: list[dict], by: str, fmt: str = "md", decimals: int = 2) -> str:
    """Rows (method, column), columns the bins; cells mean +- ci95 (n episodes)."""
    frame = breakdown_frame(records, by)
    bins = frame.drop_duplicates("bin").sort_values(["centre"])["bin"].tolist()
    if fmt == "csv":
        return frame.drop(columns=["order"]).to_csv(index=False, lineterminator="\n")
    if fmt != "md":
        raise FewshotError("--by tables are md or csv")
    label = "ways" if by == "ways" else "shots a class (mean over the episode's classes)"
    lines = ["| method | episodes | " + " | ".join(f"{by} {b}" for b in bins) + " |",
             "|" + "---|" * (len(bins) + 2)]
    for (method, column), group in frame.groupby(["method", "column"], sort=False):
        cells = dict(zip(group["bin"], group.itertuples()))
        text = [f"{cells[b].mean:.{decimals}f} +- {cells[b].half:.{decimals}f} ({cells[b].n})" if b in cells else "-"
                for b in bins]
        lines.append(f"| {method} | {column} | " + " | ".join(text) + " |")
    return "\n".join(lines) + (f"\n\nTable: accuracy (%) by {label}: mean +- 1.96*std/sqrt(n) (ddof 0) over the "
                               "episodes of each bin (n in brackets).\n")
