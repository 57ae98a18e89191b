"""Learning curves from run folders' log.csv: training loss and validation accuracy against steps.

What the figure says about itself (each point a finding of new users):
- the validation axis names the protocol the runs validated with (ways, shots, queries, episodes, split,
  from each run's config.json); runs that validated differently say so in their legend entries;
- a loss panel mixing different losses (triplet, prototypical, ...) says so, and each legend entry names
  its loss: their values are not comparable;
- log ticks are plain numbers (0.6, 2), not "6x10^-1";
- default labels come from the config keys in which the runs differ (`cir.p=0.25, cir.alpha=0.1`), not
  from folder names ending in config digests; a run with CIR off is named `CIR off`, not like the CIR run;
- a run keeps its colour in both panels; a log with one row draws a marker, not an invisible line;
- without any validation rows the validation panel is left out and the title says "no validation".
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from fewshot.atomic import write_bytes_atomic
from fewshot.config import flat as flat_config
from fewshot.errors import FewshotError

# Keys that never tell two runs apart in a label: bookkeeping, or the name itself (shown separately).
_LABEL_SKIP = {"name", "train.device", "train.checkpoint_every", "train.keep_every", "train.log_every",
               "train.tensorboard", "train.compile", "train.channels_last", "eval.batch_episodes"}


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


def read_config(run: str | Path) -> dict | None:
    """The run's resolved config (config.json), or None where it has none or it does not parse."""
    try:
        return json.loads((Path(run) / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def validation_protocol(config: dict | None) -> str | None:
    """'5-way 1-shot 15-query, 200 val episodes' from a config's train.val_* keys (None: unknown)."""
    t = (config or {}).get("train") or {}
    if not all(k in t for k in ("val_ways", "val_shots", "val_queries", "val_episodes")):
        return None
    return (f"{t['val_ways']}-way {t['val_shots']}-shot {t['val_queries']}-query, "
            f"{t['val_episodes']} {t.get('val_split', 'val')} episodes")


def loss_name(config: dict | None) -> str | None:
    """The loss the run trained with (CIR moves features, so a CIR run still trains with this loss)."""
    loss = ((config or {}).get("loss") or {}).get("name")
    return None if loss is None else str(loss)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe_values(values: dict[str, Any]) -> str:
    """`cir.p=0.25, cir.alpha=0.1` (booleans as TOML writes them)."""
    return ", ".join(f"{k}={_text(v)}" for k, v in values.items())


def run_labels(configs: list[dict | None], fallback: list[str]) -> list[str]:
    """A label per run from the config keys whose values differ between the runs.

    With CIR off, the other cir.* keys mean nothing, so such a run is `CIR off` plus its other differences.
    The config name leads where names differ. Runs that differ in nothing (or have no config) keep
    `fallback` (their folder names); labels that would repeat get the fallback appended.
    """
    if len(configs) < 2 or any(c is None for c in configs):
        return list(fallback)
    flats = [flat_config(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    differing = [k for k in keys if k not in _LABEL_SKIP and len({json.dumps(f.get(k)) for f in flats}) > 1]
    names_differ = len({c.get("name") for c in configs}) > 1
    labels = []
    for flat, config, folder in zip(flats, configs, fallback):
        cir_keys = [k for k in differing if k.startswith("cir.")]
        cir_off = bool(cir_keys) and flat.get("cir.enabled") is False
        parts = [str(config.get("name"))] if names_differ else []
        if cir_off:
            parts.append("CIR off")
        elif cir_keys == ["cir.enabled"]:
            parts.append("CIR on")
        parts += [f"{k}={_text(flat.get(k))}" for k in differing
                  if not k.startswith("cir.") or not cir_off and k != "cir.enabled"]
        labels.append(", ".join(parts) or folder)
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({folder})" if label != folder else label for label, folder in zip(labels, fallback)]
    return labels


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Plain numbers on a log axis (0.6, 2, 10), where matplotlib would write 6x10^-1 or 6e-01.

    matplotlib's LogFormatter decides which minor ticks get a label (all of them on a short axis, none
    on a long one); only the text of each label is changed here.
    """
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):  # LogFormatter's one hook for the text of a label
            return f"{x:.4g}"

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def learning_curve_figure(runs: list[str | Path], labels: list[str] | None = None, title: str = ""):
    """The figure behind plot_learning_curves (a matplotlib Figure on an Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = [read_log(run) for run in runs]
    configs = [read_config(run) for run in runs]
    labels = list(labels) if labels else run_labels(configs, [Path(r).name for r in runs])
    has_val = [bool(log["val_acc"].notna().any()) if "val_acc" in log else False for log in logs]
    any_val = any(has_val)
    losses = [loss_name(c) for c in configs]
    mixed_losses = len(set(losses)) > 1
    protocols = [validation_protocol(c) for c in configs]
    val_protocols = {p for p, v in zip(protocols, has_val) if v}

    figure = Figure(figsize=(10, 3.8) if any_val else (5.6, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if any_val else 1, squeeze=False)[0]
    loss_ax = axes[0]
    val_ax = axes[1] if any_val else None
    for i, (log, label) in enumerate(zip(logs, labels)):
        color = f"C{i % 10}"  # fixed per run, so a run has one colour in both panels
        train = log.dropna(subset=["loss"]) if "loss" in log else log.iloc[0:0]
        loss_label = f"{label} [{losses[i] or 'loss unknown'}]" if mixed_losses else label
        loss_ax.plot(train["step"], train["loss"], color=color, label=loss_label,
                     marker="o" if len(train) <= 1 else None, markersize=4)
        if val_ax is not None and has_val[i]:
            val = log.dropna(subset=["val_acc"])
            val_label = label if len(val_protocols) <= 1 else f"{label} [{protocols[i] or 'protocol unknown'}]"
            val_ax.plot(val["step"], val["val_acc"], color=color, marker="o", markersize=3, label=val_label)
            if "val_ci95" in val:
                val_ax.fill_between(val["step"], val["val_acc"] - val["val_ci95"], val["val_acc"] + val["val_ci95"],
                                    color=color, alpha=0.2)
    if mixed_losses:
        loss_ylabel = "training loss (log)\ndifferent losses: not comparable"
    else:
        loss_ylabel = f"training loss, {losses[0]} (log)" if losses and losses[0] else "training loss (log)"
    loss_ax.set(xlabel="training step (episode or batch)", ylabel=loss_ylabel, yscale="log")
    plain_log_ticks(loss_ax)
    panels = [loss_ax]
    if val_ax is not None:
        if len(val_protocols) == 1 and None not in val_protocols:
            protocol = next(iter(val_protocols))
            val_ylabel = f"validation accuracy (%)\n{protocol}"
        elif len(val_protocols) > 1:
            val_ylabel = "validation accuracy (%)\nprotocols differ: see legend"
        else:
            val_ylabel = "validation accuracy (%)\nprotocol unknown (no config.json)"
        val_ax.set(xlabel="training step (episode or batch)", ylabel=val_ylabel)
        panels.append(val_ax)
    for ax in panels:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not any_val:
        title = f"{title} (no validation)" if title else "no validation in these runs"
    if title:
        figure.suptitle(title)
    return figure


def plot_learning_curves(runs: list[str | Path], out: str | Path, labels: list[str] | None = None,
                         title: str = "") -> Path:
    """One PNG: training loss (left) and validation accuracy with its 95% CI band (right), one line a run."""
    figure = learning_curve_figure(runs, labels, title)
    out = Path(out)
    if out.is_dir():
        raise FewshotError(f"--out {out} is a folder; name the PNG file to write, e.g. {out / 'curve.png'}")
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=120, format="png")  # the file is written whole or not at all
    write_bytes_atomic(out, buffer.getvalue())
    return out
