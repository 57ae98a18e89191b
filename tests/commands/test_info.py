"""`fewshot info` describes episode files, run folders and result records as well as stores."""
from __future__ import annotations

import pytest

from fewshot.cli import main
from fewshot.config import load_config
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError
from fewshot.evaluate.run import evaluate_pixels
from fewshot.results.records import write_record
from fewshot.train.loop import train


def test_info_on_an_episode_file_a_record_and_a_run(tiny_store, tiny_train_overrides, tmp_path, capsys):
    episodes = make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 10, seed=4, generated_by="test")
    episodes.save(tmp_path / "e.npz")
    assert main(["info", str(tmp_path / "e.npz")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"episode file {tmp_path / 'e.npz'}: synthetic test, 3-way 1-shot 2 queries a class, "
                          "10 episodes, seed 4")
    record = evaluate_pixels(tiny_store, [episodes], "cpu")[0]
    path = write_record(record, tmp_path / "results")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"pixels on synthetic test 3w1s (2 queries a class), 10 episodes: " in out
    assert "no run (pixels), head nearest_prototype, distance euclidean" in out
    train(load_config("protonet", tiny_train_overrides), tiny_store, tmp_path / "run", progress=False)
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run folder {tmp_path / 'run'}: protonet (prototypical, conv4), finished, 4 of 4 steps")
    assert "checkpoints: best, last" in out


def test_info_on_another_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FewshotError, match="is not a store folder, an episode file"):
        main(["--debug", "info", str(tmp_path / "notes.txt")])
