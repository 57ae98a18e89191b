"""The layering of docs/architecture.md, checked by import-linter's contracts in pyproject.toml."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.skip(f"import-linter is not installed beside {sys.executable} (it is in the dev extra)")


def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "fewshot", tmp_path / "fewshot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_every_contract(lint_available, tmp_path):
    result = _lint(_copy_package(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("evaluate/embed.py", "from fewshot.train import loop", "Evaluation never imports training"),
    ("losses/triplet.py", "import fewshot.train.ddp", "Losses, regularizers and models never import train"),
    ("data/store.py", "from fewshot.episodes import sampler", "Data readers and the store import neither"),
    ("results/tables.py", "from fewshot.commands import table", "Nothing imports the commands"),
])
def test_a_forbidden_import_breaks_its_contract(lint_available, tmp_path, module, line, contract):
    tree = _copy_package(tmp_path)
    path = tree / "fewshot" / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test: against the flow\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith(contract) for text in broken), result.stdout
