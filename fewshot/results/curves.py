"""Learning curves from run folders' log.csv: training loss and validation accuracy against steps."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

from fewshot.atomic import write_bytes_atomic
from fewshot.errors import FewshotError


LOG_COLUMNS = ("step", "loss", "train_acc", "lr", "val_acc", "val_ci95", "seconds")  # as train writes them


def read_log(run: str | Path) -> pd.DataFrame:
    """A run's log.csv, checked row by row: a step (integer) and numbers or blanks in the known columns.

    A last line cut short (a kill or a full disk mid-write; it has no newline) is left out; any other bad
    row is a one-line error naming its line."""
    path = Path(run) / "log.csv"
    if not path.is_file():
        raise FewshotError(f"{run} has no log.csv; is it a run folder from `fewshot train`?")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not readable ({exc}); the run folder is damaged") from None
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]  # torn last row
    rows = list(csv.reader(lines))
    if not rows or rows[0][:1] != ["step"] or not {"loss", "val_acc", "val_ci95"} <= set(rows[0]):
        raise FewshotError(f"{path}: the header is not {','.join(LOG_COLUMNS)}; it is not a fewshot training log")
    header = rows[0]
    values = []
    for number, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(header):
                raise ValueError
            parsed = [int(row[0])] + [float(cell) if cell.strip() else math.nan for cell in row[1:]]
        except ValueError:
            raise FewshotError(f"{path}: line {number} is not a log row ({','.join(row)[:80]!r}); the log was "
                               "edited or damaged") from None
        values.append(parsed)
    return pd.DataFrame(values, columns=header)


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
    if out.is_dir():
        raise FewshotError(f"--out {out} is a folder; name the PNG file to write, e.g. {out / 'curve.png'}")
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=120, format="png")  # the file is written whole or not at all
    write_bytes_atomic(out, buffer.getvalue())
    return out
