"""The README's scratch folders (data/, runs/, my-results/, ...) are git-ignored; results/ is not."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path, ignored", [
    ("data/omniglot/store.json", True), ("runs/proto/config.json", True), ("stores/omniglot/store.json", True),
    ("my-results/r.json", True), ("my-5w1s.npz", True), ("curve.png", True), ("demo-output/x", True),
    ("work-runs/results/r.json", True), ("results/omniglot/table.md", False),
])
def test_scratch_paths_are_ignored(path, ignored):
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
    assert (done.returncode == 0) == ignored, path
