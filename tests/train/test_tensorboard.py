"""TensorBoard events (train.tensorboard): the scalars of log.csv, read back with TensorBoard's own reader."""
from __future__ import annotations

import csv
import sys

import pytest

from fewshot.config import config_digest, load_config
from fewshot.errors import FewshotError

pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'fewshot[tensorboard]')")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from fewshot.train.tensorboard import FOLDER, ScalarLog, export_log, images_per_step  # noqa: E402


def read_events(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_event_file_holds_the_scalars_of_log_csv(tiny_store, tiny_train_overrides, tmp_path, one_torch_thread):
    from fewshot.train.loop import train

    config = load_config("protonet", tiny_train_overrides)
    run = tmp_path / "run"
    train(config, tiny_store, run, progress=False, device_name="cpu")
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and sum(1 for r in rows if r["val_acc"]) == 2

    events = read_events(export_log(run))
    column = lambda key: [(int(r["step"]), float(r[key])) for r in rows if r[key]]  # noqa: E731
    for tag, key in (("train/loss", "loss"), ("train/accuracy", "train_acc"), ("train/learning_rate", "lr"),
                     ("val/accuracy", "val_acc"), ("val/ci95", "val_ci95")):
        assert [s for s, _ in events[tag]] == [s for s, _ in column(key)], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in column(key)], rel=1e-6), tag
    val = [r for r in rows if r["val_acc"]]
    assert [v for _, v in events["val/accuracy_low"]] == pytest.approx(
        [float(r["val_acc"]) - float(r["val_ci95"]) for r in val], rel=1e-6)
    assert [v for _, v in events["val/accuracy_high"]] == pytest.approx(
        [float(r["val_acc"]) + float(r["val_ci95"]) for r in val], rel=1e-6)
    # 4 ways x (2 shots + 2 queries) images a step, over the wall time between rows (from 0 s at step 0).
    assert images_per_step(config, "episode") == 16
    previous, rates = (0, 0.0), []
    for r in rows:
        step, seconds = int(r["step"]), float(r["seconds"])
        if seconds > previous[1]:
            rates.append((step, 16 * (step - previous[0]) / (seconds - previous[1])))
        previous = (step, seconds)
    assert [s for s, _ in events["train/images_per_second"]] == [s for s, _ in rates]
    assert [v for _, v in events["train/images_per_second"]] == pytest.approx([v for _, v in rates], rel=1e-6)


def test_rows_written_as_the_loop_writes_them_and_a_resume_purges_later_events(tmp_path):
    config = load_config("siamese-triplet", {"train.tensorboard": True, "batch.classes": 8, "batch.per_class": 4})
    with ScalarLog(tmp_path, config, "pk") as log:
        assert list(tmp_path.iterdir()) == []  # nothing written before the first row
        log.write({"step": 10, "loss": 1.5, "train_acc": float("nan"), "lr": 0.001, "seconds": 2.0})
        log.write({"step": 20, "loss": 1.0, "lr": 0.001, "val_acc": 50.0, "val_ci95": 2.0, "seconds": 4.0})
        log.write({"step": 30, "loss": 0.8, "lr": 0.0005, "seconds": 5.0})
    events = read_events(tmp_path / FOLDER)
    assert events["train/loss"] == [(10, 1.5), (20, 1.0), (30, pytest.approx(0.8))]
    assert "train/accuracy" not in events  # nan: the siamese learner logs no training accuracy
    assert events["val/accuracy_low"] == [(20, 48.0)] and events["val/accuracy_high"] == [(20, 52.0)]
    assert events["train/images_per_second"] == [(10, 160.0), (20, 160.0), (30, 320.0)]  # 32 images a step
    # Resumed from the checkpoint of step 20: the stopped session's step 30 goes, as its log.csv row does.
    with ScalarLog(tmp_path, config, "pk") as log:
        log.resume_from(20)
        log.write({"step": 30, "loss": 0.7, "lr": 0.0005, "seconds": 1.0})
    events = read_events(tmp_path / FOLDER)
    assert events["train/loss"] == [(10, 1.5), (20, 1.0), (30, pytest.approx(0.7))]
    assert events["train/images_per_second"][-1] == (30, 320.0)


def test_off_by_default_and_a_no_op(tmp_path):
    config = load_config("protonet")
    assert config["train"]["tensorboard"] is False
    log = ScalarLog(tmp_path, config)
    log.write({"step": 1, "loss": 1.0})
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_the_key_changes_no_config_digest():
    on = load_config("protonet", {"train.tensorboard": "true"})
    assert on["train"]["tensorboard"] is True
    assert config_digest(on) == config_digest(load_config("protonet"))


def test_without_the_package_a_one_line_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(FewshotError, match=r"fewshot\[tensorboard\]"):
        ScalarLog(tmp_path, load_config("protonet", {"train.tensorboard": True}))
    assert list(tmp_path.iterdir()) == []
