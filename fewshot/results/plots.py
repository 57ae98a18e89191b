"""Plots of results (matplotlib, Agg canvas: no display needed)."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pandas as pd

from fewshot.atomic import write_bytes_atomic


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
            if others or references is not None:  # below the panel, where it hides no point
                ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    if title:  # wrapped to the figure's width: a one-key sweep is narrow
        figure.suptitle(textwrap.fill(title, max(24, int(4.2 * len(keys) * 8))))
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=110, format="png")  # a full disk leaves no half-written PNG behind
    write_bytes_atomic(out, buffer.getvalue())
    return out


def _save(figure, out: str | Path, dpi: int = 110) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    figure.savefig(tmp, dpi=dpi)
    tmp.replace(out)
    return out


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_distributions(panels: dict[str, list[tuple[str, list[float]]]], out: str | Path, title: str = "") -> Path:
    """Per-episode accuracies (percent) as violins with a box inside, one panel per setting.

    `panels`: setting -> [(method label, per-episode accuracies in percent)], in display order. The white
    dot is the mean (the table's number), the box the quartiles, the whiskers 1.5 IQR.
    """
    width = max(len(methods) for methods in panels.values())
    figure = _figure(min(16.0, 1.6 + 0.9 * width * len(panels)), 3.8)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (setting, methods) in zip(axes, panels.items()):
        data = [list(values) for _, values in methods]
        x = list(range(1, len(data) + 1))
        for i, (position, values) in enumerate(zip(x, data)):
            if len(set(values)) > 1:  # a violin of one value is a zero-width line: the box and dot remain
                body = ax.violinplot([values], [position], showextrema=False, widths=0.8)["bodies"][0]
                body.set_facecolor(f"C{i % 10}")
                body.set_alpha(0.35)
        ax.boxplot(data, positions=x, widths=0.18, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": "white"}, medianprops={"color": "black"})
        ax.scatter(x, [sum(v) / len(v) for v in data], color="white", edgecolor="black", zorder=3, s=18,
                   label="mean")
        names = [label for label, _ in methods]
        tilt = len(methods) > 3 or max(len(n) for n in names) * len(names) > 24  # labels that would collide
        ax.set_xticks(x, names, rotation=25 if tilt else 0, ha="right" if tilt else "center",
                      rotation_mode="anchor", fontsize=8)
        ax.set_title(setting)
        ax.set_ylabel("per-episode accuracy (%)")
        ax.grid(alpha=0.3, axis="y")
    if title:
        figure.suptitle(title)
    return _save(figure, out)


def p_text(p: float) -> str:
    """`p=0.031`, `p<1e-300` where the t-test underflows to 0 (a very large paired t statistic)."""
    return "p<1e-300" if p == 0 else f"p={p:.2g}"


def plot_forest(rows: pd.DataFrame, out: str | Path, baseline: str, interval: str, title: str = "") -> Path:
    """Paired differences from `baseline` (percent points) with their 95% intervals, one panel per setting.

    `rows`: label, column, diff, low, high, p (two-sided paired t-test); the p-value is written beside
    each interval, filled markers where p < 0.05.
    """
    columns = list(dict.fromkeys(rows["column"]))
    labels = list(dict.fromkeys(rows["label"]))
    figure = _figure(min(16.0, 1.8 + 3.6 * len(columns)), max(2.4, 1.3 + 0.42 * len(labels)))
    axes = figure.subplots(1, len(columns), squeeze=False, sharey=True)[0]
    for ax, column in zip(axes, columns):
        frame = rows[rows["column"] == column]
        for _, row in frame.iterrows():
            y = len(labels) - 1 - labels.index(row["label"])
            significant = row["p"] < 0.05
            ax.errorbar([row["diff"]], [y], xerr=[[row["diff"] - row["low"]], [row["high"] - row["diff"]]],
                        fmt="o", color="C3" if significant else "C0", capsize=3,
                        markerfacecolor=None if significant else "white")
            ax.annotate(p_text(row["p"]), (row["high"], y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set_yticks(range(len(labels)), labels[::-1], fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        low, high = min(frame["low"].min(), 0.0), max(frame["high"].max(), 0.0)
        span = (high - low) or 1.0
        ax.set_xlim(low - 0.08 * span, high + 0.4 * span)  # room on the right for the p-values
        ax.set_title(column)
        ax.set_xlabel(f"method \u2212 {baseline} (percent points)")
        ax.grid(alpha=0.3, axis="x")
    figure.suptitle(title or f"paired difference from {baseline} on the same episodes, {interval}")
    return _save(figure, out)


def plot_by_factor(points: pd.DataFrame, factor: str, out: str | Path, title: str = "") -> Path:
    """Accuracy (mean +- 95% CI, percent) against a per-episode factor (ways or shots), one line a method.

    `points`: method, column, value (of the factor), mean, half; one panel per column (result setting).
    """
    columns = list(dict.fromkeys(points["column"]))
    figure = _figure(min(16.0, 1.5 + 4.0 * len(columns)), 3.4)
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    methods = list(dict.fromkeys(points["method"]))
    for ax, column in zip(axes, columns):
        frame = points[points["column"] == column]
        for method, group in frame.groupby("method", sort=False):
            group = group.sort_values("value")
            ax.errorbar(group["value"], group["mean"], yerr=group["half"], marker="o", capsize=3, label=method,
                        color=f"C{methods.index(method) % 10}")
        values = sorted(set(frame["value"]))
        ax.set_xticks(values, [str(v) for v in values])
        ax.set(xlabel=f"{factor} of the episode", ylabel="accuracy (%)", title=column)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    return _save(figure, out)


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
    return _save(figure, out)
