"""Training refusals name the config keys to change (train has no --ways), and validation is never clamped."""
from __future__ import annotations

import pytest

from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.train.loop import train


def test_training_episodes_too_large_name_the_config_keys(tiny_store, tiny_train_overrides, tmp_path):
    config = load_config("protonet", {**tiny_train_overrides, "episodes.shots": 6, "episodes.queries": 5})
    with pytest.raises(FewshotError) as error:
        train(config, tiny_store, tmp_path / "run", progress=False)
    assert str(error.value).endswith("(the smallest class of the train split); lower episodes.shots or "
                                     "episodes.queries")
    assert not (tmp_path / "run").exists()


def test_val_ways_beyond_the_validation_split_is_refused_not_clamped(tiny_store, tiny_train_overrides, tmp_path):
    # The tiny store's val split has 4 classes; before, 5-way validation silently ran 4-way.
    config = load_config("protonet", {**tiny_train_overrides, "train.val_ways": 5})
    with pytest.raises(FewshotError) as error:
        train(config, tiny_store, tmp_path / "run", progress=False)
    assert str(error.value) == ("train.val_ways=5 is more than the 4 classes of the val split (validation); use "
                                "train.val_ways=4 or fewer")
    assert not (tmp_path / "run").exists()
