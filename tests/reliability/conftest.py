"""Fixtures the reliability tests share: a finished tiny run, a small episode file, a store to damage."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from fewshot.cli import main
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import TINY_ARGS  # noqa: E402


@pytest.fixture(scope="module")
def trained_run(tiny_store, tmp_path_factory) -> Path:
    """A finished 4-step run without validation (read-only for the tests: copy it before changing it).
    test_bad_input.py has its own, with validation."""
    run = tmp_path_factory.mktemp("reliability") / "run"
    assert main(["train", "--data", str(tiny_store), "--out", str(run), "--quiet", *TINY_ARGS]) == 0
    return run


@pytest.fixture(scope="module")
def episodes_file(tiny_store, tmp_path_factory) -> Path:
    """10 episodes, 3-way 1-shot 2-query, from the tiny store's test split."""
    path = tmp_path_factory.mktemp("reliability-episodes") / "test-3w1s.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 10, seed=0).save(path)
    return path


@pytest.fixture
def store_copy(tiny_store, tmp_path) -> Path:
    """A copy of the tiny store that a test may damage."""
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return copy
