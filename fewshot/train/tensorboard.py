"""TensorBoard event files beside log.csv, for config `train.tensorboard = true`.

log.csv stays the source of truth (tables, `fewshot curve` and the report read it); the event files under
RUN/tensorboard/ carry the same scalars for people who watch runs in TensorBoard:

    train/loss, train/accuracy, train/learning_rate           (every log row that has them)
    val/accuracy, val/ci95, val/accuracy_low, val/accuracy_high  (validation rows; percent)
    train/images_per_second                                   (images trained on between two rows over the
                                                               wall time between them, validation included)

The training loop makes a `ScalarLog` before it writes the run folder, calls `resume_from(step)` when it
resumes, `write(row)` wherever it writes a log.csv row, and `close()` at the end; `export_log(run)` writes
the events of a finished run's log.csv afterwards (runs trained without the key).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from fewshot.errors import FewshotError

FOLDER = "tensorboard"
TAGS = {"loss": "train/loss", "train_acc": "train/accuracy", "lr": "train/learning_rate",
        "val_acc": "val/accuracy", "val_ci95": "val/ci95"}
MISSING = ("train.tensorboard = true needs the tensorboard package: pip install 'fewshot[tensorboard]' "
           "(or set train.tensorboard=false)")


def images_per_step(config: dict, batch_kind: str) -> int:
    """Images one training step sees: episodes x ways x (shots + queries), or a P x K batch."""
    if batch_kind == "episode":
        e = config["episodes"]
        return int(config["train"].get("episodes_per_step", 1)) * e["ways"] * (e["shots"] + e["queries"])
    b = config["batch"]
    return int(b["classes"]) * int(b["per_class"])


def _number(value) -> float | None:
    """A finite float from a log value (a float, or text read back from the CSV; '' and nan are absent)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class ScalarLog:
    """Writes log rows as TensorBoard scalars; a no-op unless enabled (default: the config's train.tensorboard).

    Made before the run folder is written: a missing package is a one-line error then, and nothing is
    written until the first row. A resumed run calls `resume_from(step)`: events the stopped session wrote
    after that step are purged, as the loop drops their log.csv rows.
    """

    def __init__(self, run_dir: str | os.PathLike, config: dict, batch_kind: str = "episode",
                 enabled: bool | None = None) -> None:
        self.enabled = bool(config.get("train", {}).get("tensorboard", False) if enabled is None else enabled)
        self.folder = Path(run_dir) / FOLDER
        self._writer = None
        self._purge_step: int | None = None
        self._last = (0, 0.0)  # (step, seconds) of the previous row; the loop's seconds start at 0 each session
        if not self.enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FewshotError(MISSING) from None
        self._summary_writer = SummaryWriter
        self.images_per_step = images_per_step(config, batch_kind)

    def resume_from(self, step: int) -> None:
        self._purge_step = step + 1 if step else None
        self._last = (step, 0.0)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            self._writer = self._summary_writer(log_dir=str(self.folder), purge_step=self._purge_step)
        step = int(row["step"])
        for key, tag in TAGS.items():
            value = _number(row.get(key))
            if value is not None:
                self._writer.add_scalar(tag, value, step)
        acc, ci = _number(row.get("val_acc")), _number(row.get("val_ci95"))
        if acc is not None and ci is not None:
            self._writer.add_scalar("val/accuracy_low", acc - ci, step)
            self._writer.add_scalar("val/accuracy_high", acc + ci, step)
        seconds = _number(row.get("seconds"))
        if seconds is not None:
            last_step, last_seconds = self._last
            if step > last_step and seconds > last_seconds:
                rate = self.images_per_step * (step - last_step) / (seconds - last_seconds)
                self._writer.add_scalar("train/images_per_second", rate, step)
            self._last = (step, seconds)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "ScalarLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def export_log(run_dir: str | os.PathLike) -> Path:
    """Write RUN/tensorboard/ from a run's log.csv and config.json (a run trained without the key)."""
    import csv
    import json

    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        with open(run_dir / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise FewshotError(f"{run_dir} has no {Path(exc.filename).name}; is it a run folder from `fewshot train`?") from None
    from fewshot.learners.registry import LEARNERS

    kind = getattr(LEARNERS.get(config["learner"]), "batch_kind", "episode")
    with ScalarLog(run_dir, config, kind, enabled=True) as log:
        for row in rows:
            log.write(row)
    return run_dir / FOLDER
