"""Shared fixtures: the real data folder (or a skip), a tiny synthetic store, a tiny training config."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# The repository's sibling `shared/data` (Omniglot archives, split files); never needed to pass the suite.
# FEWSHOT_SHARED_DATA points elsewhere (a git worktree or a clone has no sibling `shared`).
SHARED_DATA = Path(os.environ.get("FEWSHOT_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")

# Few classes, few images: every split can supply 3-way 2-shot 2-query episodes (tests rely on these counts).
TINY_SPLITS = {"train": 8, "val": 4, "test": 6}
TINY_IMAGES_PER_CLASS = 10

# A model and run small enough to train a few steps in about a second on one CPU core.
TINY_TRAIN_OVERRIDES = {
    "backbone.hidden": 8,
    "episodes.ways": 4,
    "episodes.shots": 2,
    "episodes.queries": 2,
    "train.steps": 4,
    "train.val_every": 2,
    "train.val_episodes": 5,
    "train.val_ways": 3,
    "train.val_shots": 1,
    "train.val_queries": 2,
    "train.checkpoint_every": 2,
    "train.log_every": 1,
    "train.device": "cpu",
    "train.channels_last": False,
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}: skipping (FEWSHOT_SHARED_DATA=DIR names another)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A synthetic store: train 8 / val 4 / test 6 classes x 10 images of 28x28x1 (read-only: do not modify)."""
    from fewshot.data.synthetic import prepare_synthetic

    out = tmp_path_factory.mktemp("tiny") / "store"
    prepare_synthetic(out, seed=0, images_per_class=TINY_IMAGES_PER_CLASS, splits=TINY_SPLITS)
    return out


@pytest.fixture
def tiny_train_overrides() -> dict:
    """Config overrides (a fresh dict each test) for a tiny, fast ProtoNet run on `tiny_store`."""
    return dict(TINY_TRAIN_OVERRIDES)


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy machine every op would wait for all of them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
