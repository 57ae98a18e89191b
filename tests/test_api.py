"""The Python API (fewshot/api.py): cheap to import, plain objects back, the same numbers as the verbs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import fewshot
from fewshot.errors import FewshotError
from fewshot.evaluate.embed import embed_rows


def test_import_fewshot_imports_neither_torch_nor_pandas():
    code = ("import sys, fewshot; fewshot.load_config; fewshot.Store; "
            "print(sorted(m for m in ('torch', 'pandas', 'fewshot.train.loop') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_api_names_are_listed_and_unknown_names_are_attribute_errors():
    from fewshot import api

    assert fewshot.__all__ == api.__all__
    assert all(callable(getattr(fewshot, name)) for name in fewshot.__all__)
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        fewshot.trian  # noqa: B018


@pytest.fixture
def trained(tiny_store, tiny_train_overrides, tmp_path):
    config = {**fewshot.load_config("protonet"), "name": "proto"}  # a config dict works like a method name
    summary = fewshot.train_run(config, tiny_store, tmp_path / "run", tiny_train_overrides, progress=False)
    return tmp_path / "run", summary


def test_train_evaluate_table_compare_frame(trained, tiny_store, tmp_path):
    run, summary = trained
    assert summary["status"] == "finished" and summary["steps"] == 4 and summary["method"] == "proto"
    store = fewshot.Store(tiny_store)
    episodes = fewshot.make_episodes(store, ways=3, shots=1, queries=2, count=20, out=tmp_path / "e.npz")
    assert fewshot.load_episodes(tmp_path / "e.npz").checksum == episodes.checksum
    model = fewshot.evaluate_run(run, episodes, out=tmp_path / "results", device="cpu")
    pixels = fewshot.evaluate_run("pixels", tmp_path / "e.npz", data=store, out=tmp_path / "results", device="cpu")
    assert [type(r) for r in model + pixels] == [dict, dict]
    assert model[0]["method"] == "proto" and len(model[0]["per_episode_accuracy"]) == 20
    frame = fewshot.records_frame(tmp_path / "results")
    assert isinstance(frame, pd.DataFrame) and sorted(frame["method"]) == ["pixels", "proto"]
    row = frame.set_index("method").loc["proto"]
    assert row["mean"] == pytest.approx(np.mean(model[0]["per_episode_accuracy"]) * 100)
    assert fewshot.table(model + pixels) == fewshot.table(tmp_path / "results")
    d = fewshot.compare(model[0], pixels[0]["_path"])
    diff = (np.array(model[0]["per_episode_accuracy"]) - np.array(pixels[0]["per_episode_accuracy"])) * 100
    assert d["n"] == 20 and d["mean"] == pytest.approx(diff.mean()) and d["method_b"] == "pixels"


def test_a_config_dict_is_checked_like_a_file(tiny_store, tmp_path):
    with pytest.raises(FewshotError, match="config: unknown config key 'optim.lrr'; did you mean 'optim.lr'"):
        fewshot.train_run({"optim": {"lrr": 0.1}}, tiny_store, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_learner_embed_takes_uint8_store_images(trained, tiny_store):
    learner = fewshot.load_learner(trained[0], device="cpu")
    split = fewshot.Store(tiny_store).split("test")
    expected = embed_rows(learner.embed, split.images, np.arange(6), torch.device("cpu"))  # the eval path
    with torch.no_grad():
        assert torch.equal(learner.embed(split.images[:6]), expected)  # numpy uint8 (6, 28, 28, 1)
        assert torch.equal(learner.embed(torch.from_numpy(np.array(split.images[:6]))), expected)
    assert np.array_equal(fewshot.embed(learner, split.images[:6]), expected.numpy())
    assert np.array_equal(fewshot.embed(trained[0], split, device="cpu")[:6], expected.numpy())
