"""Plots of results (matplotlib, Agg canvas: no display needed)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_sweep(points: pd.DataFrame, keys: list[str], out: str | Path, levels: dict[str, list] | None = None,
               title: str = "", references: pd.DataFrame | None = None) -> Path:
    """Accuracy with 95% CI error bars against each swept key.

    `points`: one row per (grid point, column) with the key columns, `column` (the episode setting),
    `mean` and `half` (the CI half-width). One subplot per (setting, swept key); within it one line per
    combination of the other keys. Numeric keys get a numeric axis (log when values span 20x or more),
    others evenly spaced categories. `levels` gives each key's values in display order. `references`
    (column, label, mean, half), e.g. a baseline outside the grid, are drawn as dashed lines with a band.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    levels = {k: list((levels or {}).get(k) or list(dict.fromkeys(points[k]))) for k in keys}
    columns = list(dict.fromkeys(points["column"]))
    figure = Figure(figsize=(4.2 * len(keys), 3.2 * len(columns)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(columns), len(keys), squeeze=False)
    for row, column in enumerate(columns):
        frame = points[points["column"] == column]
        for col, key in enumerate(keys):
            ax = axes[row][col]
            values = levels[key]
            numeric = all(_is_number(v) for v in values)

            def position(value, values=values, numeric=numeric) -> float:
                # Matched by ==, so numpy scalars from the frame find their plain Python level.
                i = values.index(value)
                return float(values[i]) if numeric else float(i)

            others = [k for k in keys if k != key]
            groups = frame.groupby(others, sort=False, dropna=False) if others else [((), frame)]
            for group_values, group in groups:
                group_values = group_values if isinstance(group_values, tuple) else (group_values,)
                order = sorted(group.index, key=lambda i: position(group.at[i, key]))
                x = [position(group.at[i, key]) for i in order]
                label = ", ".join(f"{k}={v}" for k, v in zip(others, group_values)) or None
                ax.errorbar(x, group.loc[order, "mean"], yerr=group.loc[order, "half"], marker="o", capsize=3,
                            label=label)
            if numeric:
                positive = [float(v) for v in values if float(v) > 0]
                if len(positive) == len(values) and max(positive) / min(positive) >= 20:
                    ax.set_xscale("log")
                ax.set_xticks([float(v) for v in values], [str(v) for v in values])
                ax.minorticks_off()
            else:
                ax.set_xticks(range(len(values)), [str(v) for v in values])
            if references is not None:
                for i, (_, ref) in enumerate(references[references["column"] == column].iterrows()):
                    color = "0.3" if i == 0 else f"C{7 + i % 3}"  # greys and olive: apart from the swept lines
                    ax.axhline(ref["mean"], linestyle="--", color=color, label=ref["label"])
                    ax.axhspan(ref["mean"] - ref["half"], ref["mean"] + ref["half"], color=color, alpha=0.12)
            ax.set_xlabel(key)
            ax.set_ylabel("accuracy (%)")
            ax.set_title(column)
            ax.grid(alpha=0.3)
            if others or references is not None:
                ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    tmp.replace(out)
    return out


def plot_by_ways(frame: pd.DataFrame, out: str | Path, title: str = "") -> Path:
    """Accuracy (95% CI bars) against the episode's ways, one line a (method, episode set).

    `frame`: fewshot.results.breakdown.breakdown_frame(records, "ways")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    figure = Figure(figsize=(6.0, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for (method, column), group in frame.groupby(["method", "column"], sort=False):
        group = group.sort_values("centre")
        ax.errorbar(group["centre"], group["mean"], yerr=group["half"], marker="o", capsize=3,
                    label=f"{method} ({column})")
    ax.set_xlabel("ways (bin centre)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    tmp.replace(out)
    return out
