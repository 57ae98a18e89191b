"""The training loop on the tiny store: run folder contents, resume, refusals, NaN stop, load_run."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import fewshot.train.loop as loop
from fewshot.config import config_digest, load_config
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError
from fewshot.evaluate.run import evaluate_run
from fewshot.learners.prototypical import PrototypicalLearner
from fewshot.runs.checkpoint import load_checkpoint
from fewshot.runs import load_run
from fewshot.train.loop import train


def _log_rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_writes_a_complete_run_folder(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", tiny_train_overrides)
    summary = train(config, tiny_store, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "input.json", "log.csv", "run.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert json.loads((run / "config.json").read_text()) == config
    assert json.loads((run / "input.json").read_text()) == {"image_shape": [28, 28, 1], "n_classes": 8,
                                                            "dataset": "synthetic"}
    saved = json.loads((run / "run.json").read_text())
    assert saved == summary
    assert saved["status"] == "finished" and saved["steps"] == 4 and saved["method"] == "protonet"
    assert saved["config_digest"] == config_digest(config)
    assert saved["train_split_checksum"] == Store(tiny_store).split("train").checksum
    assert saved["best"]["step"] in (2, 4) and 0.0 <= saved["best"]["val_acc"] <= 100.0
    rows = _log_rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert [r["val_acc"] != "" for r in rows] == [False, True, False, True]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["step"] == 4 and set(last) >= {"model", "optimizer", "scheduler", "sampler", "torch_rng", "best"}
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == saved["best"]["step"]


def test_existing_run_folder_is_refused_without_resume(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", tiny_train_overrides)
    train(config, tiny_store, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(FewshotError, match="already holds a run; pass --resume"):
        train(config, tiny_store, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before
    changed = load_config("protonet", dict(tiny_train_overrides, **{"optim.lr": 0.01}))
    with pytest.raises(FewshotError, match="config differs"):
        train(changed, tiny_store, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(FewshotError, match="no checkpoints/last.pt"):
        train(config, tiny_store, tmp_path / "elsewhere", resume=True, progress=False)


def test_resume_after_an_interruption_continues_to_the_end(tiny_store, tiny_train_overrides, tmp_path, monkeypatch):
    config = load_config("protonet", tiny_train_overrides)
    train(config, tiny_store, tmp_path / "straight", progress=False)

    original_next = loop.BatchSource.next
    calls = {"n": 0}

    def interrupted_next(self, device, channels_last):
        calls["n"] += 1
        if calls["n"] == 4:  # steps 1-3 done, the last checkpoint is step 2
            raise KeyboardInterrupt
        return original_next(self, device, channels_last)

    monkeypatch.setattr(loop.BatchSource, "next", interrupted_next)
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_store, tmp_path / "run", progress=False)
    monkeypatch.setattr(loop.BatchSource, "next", original_next)
    run = tmp_path / "run"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert [int(r["step"]) for r in _log_rows(run)] == [1, 2, 3]

    summary = train(config, tiny_store, run, resume=True, progress=False)
    assert summary["status"] == "finished" and summary["steps"] == 4
    assert [int(r["step"]) for r in _log_rows(run)] == [1, 2, 3, 4]  # step 3 redone, not duplicated
    # Restored sampler, optimizer and RNG states: the resumed run ends where the uninterrupted one did.
    resumed = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    for name, tensor in straight.items():
        assert torch.equal(resumed[name], tensor), name


def _loss_turns_nan_at_call(call: int, monkeypatch) -> None:
    """Make ProtoNet's loss NaN on its `call`-th call (1-based), finite otherwise."""
    original_loss = PrototypicalLearner.loss
    calls = {"n": 0}

    def loss_turning_nan(self, batch):
        loss, metrics = original_loss(self, batch)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == call else loss), metrics

    monkeypatch.setattr(PrototypicalLearner, "loss", loss_turning_nan)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_store, tiny_train_overrides,
                                                                         tmp_path, monkeypatch):
    _loss_turns_nan_at_call(3, monkeypatch)
    config = load_config("protonet", tiny_train_overrides)
    with pytest.raises(FewshotError) as error:
        train(config, tiny_store, tmp_path / "run", progress=False)
    message = str(error.value)
    assert "loss became nan at step 3" in message and "(step 2)" in message and "\n" not in message
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_nan_loss_is_caught_before_the_next_checkpoint_when_steps_are_not_read(tiny_store, tiny_train_overrides,
                                                                              tmp_path, monkeypatch):
    """The GPU path (losses read only at log rows and checkpoints), run on CPU: the NaN of step 3 is caught at
    the checkpoint of step 4, which is not written, and the error names the unread range."""
    import fewshot.train.loop as loop

    _loss_turns_nan_at_call(3, monkeypatch)
    monkeypatch.setattr(loop, "_reads_loss_every_step", lambda device: False)
    overrides = dict(tiny_train_overrides, **{"train.checkpoint_every": 2, "train.log_every": 50, "train.val_every": 0})
    with pytest.raises(FewshotError) as error:
        train(load_config("protonet", overrides), tiny_store, tmp_path / "run", progress=False)
    message = str(error.value)
    assert "loss became nan between steps 3 and 4" in message and "(step 2)" in message, message
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_huge_learning_rate_is_stopped_by_the_nan_check(tiny_store, tiny_train_overrides, tmp_path):
    overrides = dict(tiny_train_overrides, **{"optim.lr": 1e30, "train.steps": 20, "train.checkpoint_every": 1,
                                              "train.val_every": 0})
    with pytest.raises(FewshotError, match=r"loss became (nan|inf) at step \d+; stopped"):
        train(load_config("protonet", overrides), tiny_store, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_load_run_rebuilds_the_trained_model(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", tiny_train_overrides)
    train(config, tiny_store, tmp_path / "run", progress=False)
    for which in ("best", "last"):
        learner, loaded_config, summary = load_run(tmp_path / "run", which)
        assert loaded_config == config and summary["status"] == "finished"
        assert isinstance(learner, PrototypicalLearner) and not learner.training
        saved = load_checkpoint(tmp_path / "run" / "checkpoints" / f"{which}.pt")["model"]
        for name, tensor in learner.state_dict().items():
            assert torch.equal(tensor, saved[name]), name
    images = torch.from_numpy(np.array(Store(tiny_store).split("test").images[:5])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        embedding = learner.embed(images)
    assert embedding.shape == (5, 64)  # Conv-4 on 28x28: 64 channels x 1 x 1
    with pytest.raises(FewshotError, match="not a run folder"):
        load_run(tmp_path / "nothing")


def test_a_kept_step_is_the_run_of_that_many_steps(tiny_store, tiny_train_overrides, tmp_path, one_torch_thread):
    # What reproduce.sh relies on: one long train+val run, read at the step chosen on val, is the retrain.
    overrides = {**tiny_train_overrides, "train.val_every": 0}
    long = load_config("protonet", {**overrides, "train.steps": 6, "train.keep_every": 2})
    short = load_config("protonet", {**overrides, "train.steps": 4})
    train(long, tiny_store, tmp_path / "long", progress=False)
    train(short, tiny_store, tmp_path / "short", progress=False)
    kept = sorted(p.name for p in (tmp_path / "long" / "checkpoints").glob("step-*.pt"))
    assert kept == ["step-2.pt", "step-4.pt", "step-6.pt"]
    learner, _, summary = load_run(tmp_path / "long", "step-4")
    assert summary["checkpoint_step"] == 4
    reference = load_checkpoint(tmp_path / "short" / "checkpoints" / "best.pt")["model"]
    for name, tensor in learner.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    # The final kept step is the run's own last weights.
    last = load_checkpoint(tmp_path / "long" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(t, last[n]) for n, t in load_run(tmp_path / "long", "step-6")[0].state_dict().items())
    # Records name the checkpoint they were measured on.
    episodes = make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 4, seed=0)
    record, = evaluate_run(tmp_path / "long", [episodes], tiny_store, "cpu", checkpoint="step-4")
    assert (record["checkpoint"], record["checkpoint_step"]) == ("step-4", 4)


def test_a_step_that_was_not_kept_is_refused_with_the_kept_ones(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", {**tiny_train_overrides, "train.steps": 4, "train.keep_every": 2})
    train(config, tiny_store, tmp_path / "run", progress=False)
    with pytest.raises(FewshotError, match=r"kept no weights of step-3 \(kept steps: 2, 4;"):
        load_run(tmp_path / "run", "step-3")
    for bad in ("step-0", "step-x", "first", "step--2"):
        with pytest.raises(FewshotError, match="is not best, last or step-N"):
            load_run(tmp_path / "run", bad)
