"""`fewshot table FOLDER` reads the records of subfolders too, and says how many it read."""
from __future__ import annotations

import json

import numpy as np

from fewshot.cli import main
from fewshot.results.records import make_record, write_record


def test_records_in_subfolders_are_tabled_and_counted(tmp_path, capsys):
    meta = {"ways": 5, "shots": 1, "queries": 15, "dataset": "d", "split": "test", "checksum": "c" * 64}
    write_record(make_record("a", np.array([0.5, 0.7]), meta, "s" * 64, {"seed": 0}), tmp_path / "results" / "x")
    write_record(make_record("b", np.array([0.2, 0.4]), meta, "s" * 64, {"seed": 0}), tmp_path / "results" / "y" / "z")
    (tmp_path / "results" / "x" / "config.json").write_text(json.dumps({"name": "not a record"}))
    assert main(["table", str(tmp_path / "results")]) == 0
    captured = capsys.readouterr()
    assert "| a | **60.00 +- 13.86** |" in captured.out  # 1.96 * 10 / sqrt(2) = 13.86
    assert "| b | 30.00 +- 13.86 |" in captured.out
    assert captured.err == f"read 2 result records from {tmp_path / 'results'}\n"
