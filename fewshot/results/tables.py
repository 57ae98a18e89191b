"""Result tables: rows are methods, columns episode settings, cells `mean +- ci95` (pandas underneath)."""
from __future__ import annotations

import pandas as pd

from fewshot.errors import FewshotError

PIXEL_METHOD = "pixels"


def _setting_key(setting: str) -> tuple[int, int]:
    ways, shots = setting.rstrip("s").split("w")
    return int(ways), int(shots)


def results_frame(records: list[dict]) -> pd.DataFrame:
    """Long frame: one row per record with method, setting, mean, ci95, n_episodes, episodes checksum."""
    rows = [{
        "method": r["method"], "setting": r["setting"], "mean": r["mean"], "ci95": r["ci95"],
        "n_episodes": r["n_episodes"], "episodes": r["provenance"]["episodes_checksum"],
        "dataset": r["dataset"],
    } for r in records]
    frame = pd.DataFrame(rows)
    mixed = frame.groupby("setting")["episodes"].nunique()
    if (mixed > 1).any():
        bad = mixed[mixed > 1].index[0]
        raise FewshotError(f"column {bad} mixes results measured on different episode sets; "
                           "table only results evaluated on the same episode files")
    return frame


def cell_table(records: list[dict], decimals: int = 2) -> pd.DataFrame:
    frame = results_frame(records)
    duplicated = frame.duplicated(["method", "setting"], keep=False)
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise FewshotError(f"two results for method {row['method']!r} in column {row['setting']}; "
                           "give each run a distinct method name or table them separately")
    frame["cell"] = frame.apply(lambda r: f"{r['mean']:.{decimals}f} +- {r['ci95']:.{decimals}f}", axis=1)
    table = frame.pivot(index="method", columns="setting", values="cell")
    table = table[sorted(table.columns, key=_setting_key)]
    order = sorted(table.index, key=lambda m: (m == PIXEL_METHOD, m))
    return table.loc[order].fillna("-")


def format_table(records: list[dict], fmt: str = "md", decimals: int = 2) -> str:
    table = cell_table(records, decimals)
    if fmt == "csv":
        return table.to_csv()
    if fmt == "md":
        return table.to_markdown() if _has_tabulate() else _markdown(table)
    if fmt == "latex":
        return table.to_latex(escape=True)
    raise FewshotError(f"unknown table format {fmt!r}; choose md, csv or latex")


def _has_tabulate() -> bool:
    return False


def _markdown(table: pd.DataFrame) -> str:
    header = ["method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([str(method), *map(str, row.values)]) + " |")
    return "\n".join(lines) + "\n"
