"""A point on several processes of one job: training under torchrun (gloo on CPU here, nccl on GPUs)."""
from __future__ import annotations

import json

import pytest

from fewshot.config import config_digest, load_config
from fewshot.sweep.torchrun import torchrun_trainer


@pytest.mark.slow  # torchrun and its two processes each import torch
def test_a_point_trains_under_torchrun_with_two_processes(tiny_store, tiny_train_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = load_config("protonet", {**tiny_train_overrides, "train.val_every": 0, "train.steps": 4,
                                      "train.episodes_per_step": 2})
    run = tmp_path / "runs" / "protonet-x"
    train = torchrun_trainer(2, tmp_path / "points" / "config.json")
    train(config, tiny_store, run, resume=False, device_name="cpu")
    summary = json.loads((run / "run.json").read_text())
    assert (summary["status"], summary["steps"], summary["config_digest"]) == ("finished", 4, config_digest(config))
    assert json.loads((tmp_path / "points" / "config.json").read_text()) == config  # what the processes trained
