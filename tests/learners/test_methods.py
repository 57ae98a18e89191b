"""Every method config trains a few steps on the tiny store and evaluates on fixed episodes."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from fewshot.config import list_configs, load_config
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.evaluate.run import evaluate_run
from fewshot.runs.checkpoint import load_checkpoint
from fewshot.train.loop import train

PK_OVERRIDES = {"train.steps": 3, "train.val_every": 0, "train.checkpoint_every": 2, "batch.classes": 4,
                "batch.per_class": 2}


@pytest.fixture(scope="module")
def test_episodes(tiny_store):
    return [make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 5, seed=0)]


@pytest.mark.parametrize("method", list_configs())
def test_method_trains_and_evaluates(method, tiny_store, tiny_train_overrides, test_episodes, tmp_path):
    config = load_config(method, {**tiny_train_overrides, **PK_OVERRIDES})
    summary = train(config, tiny_store, tmp_path / "run", progress=False)
    assert summary["status"] == "finished" and summary["steps"] == 3
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    [record] = evaluate_run(tmp_path / "run", test_episodes, device_name="cpu")
    assert record["n_episodes"] == 5 and 0.0 <= record["mean"] <= 100.0


def test_resume_reproduces_center_ema_bank_and_cir_memory(tiny_store, tiny_train_overrides, tmp_path):
    """Banks are buffers in the checkpoint and CIR draws from torch's RNG, which checkpoints restore."""
    overrides = {**tiny_train_overrides, **PK_OVERRIDES, "train.steps": 4, "loss.center_update": "ema",
                 "cir.means": "memory"}
    straight = load_config("center-cir", overrides)
    train(straight, tiny_store, tmp_path / "straight", progress=False)
    stopped = load_config("center-cir", {**overrides, "train.steps": 2})
    train(stopped, tiny_store, tmp_path / "resumed", progress=False)
    # Resuming needs the same config; only the step budget grows, so rewrite it as the straight run's.
    (tmp_path / "resumed" / "config.json").write_text((tmp_path / "straight" / "config.json").read_text())
    train(straight, tiny_store, tmp_path / "resumed", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert {"center_loss.centers", "cir.memory", "cir.memory_seen"} <= set(a)
    assert a["cir.memory_seen"].sum() > 0 and a["center_loss.centers"].abs().sum() > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key
