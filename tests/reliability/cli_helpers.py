"""What the reliability tests share: a tiny training config as overrides, and the CLI run two ways.

`error_of` is the promise itself: exit code 2 and one line naming the problem, no traceback."""
from __future__ import annotations

import re

from fewshot.cli import main

TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.steps": 4,
        "train.val_every": 0, "train.checkpoint_every": 2, "train.log_every": 1, "train.device": "cpu",
        "train.channels_last": False}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]
ERROR_LINE = re.compile(r"^fewshot( [a-z]+)?: error: \S")


def error_of(argv: list, capsys) -> str:
    """Run the CLI; assert exit code 2 and one error line without a traceback; return it."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2, (code, captured.err)
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.err.endswith("\n"), captured.err
    assert ERROR_LINE.match(lines[0]), lines[0]
    return lines[0]


def ok(argv: list, capsys) -> str:
    """Run the CLI; assert exit code 0; return what it printed."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out
