"""--resume: differing keys are named; a larger train.steps extends a finished run to exactly the longer run."""
from __future__ import annotations

import json

import pytest
import torch

from fewshot.cli import main
from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.runs.checkpoint import load_checkpoint
from fewshot.train.loop import train


def test_a_differing_config_names_its_keys(tiny_store, tiny_train_overrides, tmp_path):
    train(load_config("protonet", tiny_train_overrides), tiny_store, tmp_path / "run", progress=False)
    changed = load_config("protonet", {**tiny_train_overrides, "optim.lr": 0.01, "episodes.shots": 1})
    with pytest.raises(FewshotError) as error:
        train(changed, tiny_store, tmp_path / "run", resume=True, progress=False)
    message = str(error.value)
    assert "episodes.shots = 2 there, 1 now; optim.lr = 0.001 there, 0.01 now" in message
    assert f"--config {tmp_path / 'run' / 'config.json'} --resume" in message
    shorter = load_config("protonet", {**tiny_train_overrides, "train.steps": 2})
    with pytest.raises(FewshotError, match="train.steps can only grow"):
        train(shorter, tiny_store, tmp_path / "run", resume=True, progress=False)


def test_extending_a_finished_run_gives_the_longer_run(tiny_store, tiny_train_overrides, tmp_path, capsys,
                                                       one_torch_thread):
    # 4 steps, then --resume train.steps=6 from the saved config, against 6 steps straight away (CPU: exact).
    run = tmp_path / "extended"
    train(load_config("protonet", tiny_train_overrides), tiny_store, run, progress=False)
    assert main(["train", "--config", str(run / "config.json"), "--data", str(tiny_store), "--out", str(run),
                 "--resume", "--quiet", "train.steps=6"]) == 0
    assert capsys.readouterr().out.startswith(f"trained protonet for 6 steps into {run}")
    straight = tmp_path / "straight"
    train(load_config("protonet", {**tiny_train_overrides, "train.steps": 6}), tiny_store, straight, progress=False)
    a, b = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 6
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
