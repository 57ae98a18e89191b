"""Progress when stderr is not a terminal: plain lines every few log rows, no carriage returns; --quiet: none."""
from __future__ import annotations

from fewshot.cli import main
from fewshot.train.progress import TrainingProgress, line_interval


def test_line_interval_is_a_multiple_of_log_every_near_fifty_lines():
    assert line_interval(12000, 50) == 250  # 48 lines
    assert line_interval(600, 50) == 50  # 12 lines: never fewer steps than a log row
    assert line_interval(4, 1) == 1


def test_lines_name_step_loss_and_validation(capsys):
    shown = TrainingProgress("lines", 4, 0, "train x", 2)
    for step, loss, val in ((1, None, None), (2, 0.5, 80.0), (3, None, None), (4, 0.25, None)):
        shown.update(step, loss, val)
    shown.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(", ")[:3] for line in lines] == [
        ["train x: step 2/4 (50%)", "loss 0.500", "val 80.00%"], ["train x: step 4/4 (100%)", "loss 0.250", "val 80.00%"]]


def _train(tiny_store, tiny_train_overrides, out, *flags):
    overrides = [f"{k}={v}" for k, v in tiny_train_overrides.items()]
    return main(["train", "--data", str(tiny_store), "--out", str(out), *flags, *overrides])


def test_training_into_a_file_prints_plain_lines(tiny_store, tiny_train_overrides, tmp_path, capsys):
    assert _train(tiny_store, tiny_train_overrides, tmp_path / "a") == 0  # stderr captured: not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(",")[0] for line in err.splitlines()] == [f"train protonet: step {s}/4 ({25 * s}%)"
                                                                 for s in (1, 2, 3, 4)]
    assert _train(tiny_store, tiny_train_overrides, tmp_path / "b", "--no-progress") == 0
    assert len(capsys.readouterr().err.splitlines()) == 4
    assert _train(tiny_store, tiny_train_overrides, tmp_path / "c", "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("trained protonet for 4 steps")
