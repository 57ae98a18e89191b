"""train.channels_last = "auto": the layout timed once per machine and backbone, then read from a JSON cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot import layout
from fewshot.config import load_config
from fewshot.errors import FewshotError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cache_file(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "layout.json"
    monkeypatch.setenv("FEWSHOT_LAYOUT_CACHE", str(path))
    return path


def _conv() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten())


def test_config_takes_true_false_and_auto_and_refuses_other_values():
    assert load_config("protonet")["train"]["channels_last"] is True  # the default is unchanged
    assert load_config("protonet", ["train.channels_last=auto"])["train"]["channels_last"] == "auto"
    assert load_config("protonet", ["train.channels_last=AUTO"])["train"]["channels_last"] == "auto"
    assert load_config("protonet", ["train.channels_last=false"])["train"]["channels_last"] is False
    assert load_config("protonet", {"train.channels_last": True})["train"]["channels_last"] is True
    with pytest.raises(FewshotError, match='train.channels_last must be true, false or "auto", got .sideways.'):
        load_config("protonet", ["train.channels_last=sideways"])


def test_true_and_false_are_taken_as_given_without_timing(cache_file, monkeypatch):
    monkeypatch.setattr(layout, "time_layouts", lambda *a, **k: pytest.fail("timed although not auto"))
    cpu = torch.device("cpu")
    assert layout.resolve_channels_last(True, _conv(), (1, 8, 8), cpu) is True
    assert layout.resolve_channels_last(False, _conv(), (1, 8, 8), cpu) is False
    assert not cache_file.exists()


def test_auto_times_once_then_reads_the_cache_per_shape_and_mode(cache_file, monkeypatch):
    calls = []

    def fake_timing(model, shape, device, batch, mode="eval", rounds=3, forward=None):
        calls.append((shape, batch, mode))
        return {"channels_last": 2.0, "nchw": 1.0} if shape[1] == 8 else {"channels_last": 1.0, "nchw": 3.0}

    monkeypatch.setattr(layout, "time_layouts", fake_timing)
    cpu = torch.device("cpu")
    assert layout.resolve_channels_last("auto", _conv(), (1, 8, 8), cpu, batch=16) is False
    assert layout.resolve_channels_last("auto", _conv(), (1, 8, 8), cpu, batch=16) is False  # cached
    assert layout.resolve_channels_last("auto", _conv(), (1, 12, 12), cpu, batch=16) is True  # other shape
    assert layout.resolve_channels_last("auto", _conv(), (1, 8, 8), cpu, batch=16, mode="train") is False
    assert calls == [((1, 8, 8), 16, "eval"), ((1, 12, 12), 16, "eval"), ((1, 8, 8), 16, "train")]
    saved = json.loads(cache_file.read_text())
    assert len(saved) == 3
    key = layout.layout_key(_conv(), (1, 8, 8), cpu, 16, "eval")
    assert saved[key]["layout"] == "nchw" and saved[key]["seconds_per_image"] == {"channels_last": 2.0, "nchw": 1.0}
    assert layout.machine_name(cpu) in key and "1x8x8" in key and "Sequential" in key


def test_an_unwritable_or_broken_cache_does_not_fail_the_run(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FEWSHOT_LAYOUT_CACHE", str(blocker / "layout.json"))  # its folder cannot be made
    monkeypatch.setattr(layout, "time_layouts", lambda *a, **k: {"channels_last": 1.0, "nchw": 2.0})
    assert layout.resolve_channels_last("auto", _conv(), (1, 8, 8), torch.device("cpu")) is True
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    monkeypatch.setenv("FEWSHOT_LAYOUT_CACHE", str(broken))
    assert layout.resolve_channels_last("auto", _conv(), (1, 8, 8), torch.device("cpu")) is True
    assert len(json.loads(broken.read_text())) == 1  # replaced by a valid file holding the new entry


def test_real_timing_restores_the_model_and_its_mode():
    model = _conv().train()
    seconds = layout.time_layouts(model, (1, 8, 8), torch.device("cpu"), batch=4, rounds=1)
    assert set(seconds) == {"channels_last", "nchw"} and all(s > 0 for s in seconds.values())
    assert model.training and model[0].weight.is_contiguous()
    seconds = layout.time_layouts(model, (1, 8, 8), torch.device("cpu"), batch=4, mode="train", rounds=1)
    assert model[0].weight.grad is None


def test_eval_with_layout_auto_embeds_as_the_chosen_layout_does(tiny_store, tmp_path, cache_file):
    from fewshot.data.store import Store
    from fewshot.episodes.files import make_episode_file
    from fewshot.evaluate.run import evaluate_run
    from fewshot.train.loop import train
    from tests.conftest import TINY_TRAIN_OVERRIDES

    config = load_config("protonet", {**TINY_TRAIN_OVERRIDES, "train.channels_last": "auto"})
    train(config, tiny_store, tmp_path / "run", progress=False, device_name="cpu")
    files = [make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 20, seed=0)]
    auto = evaluate_run(tmp_path / "run", files, device_name="cpu")  # the run's "auto"
    entries = {k: v for k, v in json.loads(cache_file.read_text()).items() if "| eval |" in k}  # training's too
    assert len(entries) == 1
    (key, entry), = entries.items()
    assert "| eval |" in key and "1x28x28" in key and '"name": "conv4"' in key
    chosen = "channels_last" if entry["layout"] == "channels_last" else "nchw"
    given = evaluate_run(tmp_path / "run", files, device_name="cpu", layout=chosen)
    assert np.array_equal(auto[0]["per_episode_accuracy"], given[0]["per_episode_accuracy"])
    with pytest.raises(FewshotError, match="layout 'diagonal' is not one of"):
        evaluate_run(tmp_path / "run", files, device_name="cpu", layout="diagonal")


def test_timing_the_layouts_leaves_the_model_and_the_generator_as_they_were():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    expected_next = torch.rand(3)
    torch.manual_seed(3)
    layout.time_layouts(model, (1, 8, 8), torch.device("cpu"), batch=4, mode="train", rounds=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert torch.equal(torch.rand(3), expected_next)
