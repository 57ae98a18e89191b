"""`fewshot compare` on two folders: records paired by episode file (and method), each pair compared."""
from __future__ import annotations

import numpy as np

from fewshot.cli import main
from fewshot.results.records import make_record, write_record


def _meta(shots: int) -> dict:
    return {"ways": 5, "shots": shots, "queries": 15, "dataset": "d", "split": "test", "checksum": f"{shots}" * 64}


def test_two_folders_are_compared_pair_by_pair(tmp_path, capsys):
    # A: method m on the 1-shot and 5-shot files; B: method m on both too (a second measurement), plus a
    # record on a file A has no record for (left out).
    for shots, acc_a, acc_b in ((1, [0.5, 0.7], [0.4, 0.6]), (5, [0.9, 0.9], [0.9, 0.8])):
        write_record(make_record("m", np.array(acc_a), _meta(shots), "s" * 64, {"seed": 0}), tmp_path / "a")
        write_record(make_record("m", np.array(acc_b), _meta(shots), "s" * 64, {"seed": 0}), tmp_path / "b" / "sub")
    write_record(make_record("m", np.array([0.1, 0.1]), _meta(2), "s" * 64, {"seed": 0}), tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    # By hand: 1-shot A - B = 10 points on each episode, 5-shot (0 + 10) / 2 = 5 points.
    assert out.count("A - B:") == 2
    assert "d 5w1s, 2 paired episodes" in out and "A - B: +10.00 percent points" in out
    assert "d 5w5s, 2 paired episodes" in out and "A - B: +5.00 percent points" in out
    assert out.index("5w1s") < out.index("5w5s")


def test_folders_without_a_common_episode_file_are_refused_in_one_line(tmp_path, capsys):
    write_record(make_record("m", np.array([0.5]), _meta(1), "s" * 64, {"seed": 0}), tmp_path / "a")
    write_record(make_record("m", np.array([0.5]), _meta(5), "s" * 64, {"seed": 0}), tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot: error: no record of") and err.count("\n") == 1


def test_a_folder_where_a_record_file_is_expected_is_one_line(tmp_path):
    import pytest

    from fewshot.errors import FewshotError
    from fewshot.results.records import load_record

    with pytest.raises(FewshotError, match="is a folder"):
        load_record(tmp_path)
