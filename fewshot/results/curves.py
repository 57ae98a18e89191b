"""Learning curves from run folders' log.csv: training loss and validation accuracy against steps."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fewshot.errors import FewshotError


def read_log(run: str | Path) -> pd.DataFrame:
    path = Path(run) / "log.csv"
    if not path.is_file():
        raise FewshotError(f"{run} has no log.csv; is it a run folder from `fewshot train`?")
    return pd.read_csv(path)


def plot_learning_curves(runs: list[str | Path], out: str | Path, labels: list[str] | None = None,
                         title: str = "") -> Path:
    """One PNG: training loss (left) and validation accuracy with its 95% CI band (right), one line a run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = labels or [Path(r).name for r in runs]
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    loss_ax, val_ax = figure.subplots(1, 2)
    for run, label in zip(runs, labels):
        log = read_log(run)
        train = log.dropna(subset=["loss"])
        loss_ax.plot(train["step"], train["loss"], label=label)
        val = log.dropna(subset=["val_acc"])
        if len(val):
            line, = val_ax.plot(val["step"], val["val_acc"], marker="o", markersize=3, label=label)
            val_ax.fill_between(val["step"], val["val_acc"] - val["val_ci95"], val["val_acc"] + val["val_ci95"],
                                color=line.get_color(), alpha=0.2)
    loss_ax.set(xlabel="training step (episode or batch)", ylabel="training loss", yscale="log")
    val_ax.set(xlabel="training step (episode or batch)", ylabel="validation accuracy (%)")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return out
