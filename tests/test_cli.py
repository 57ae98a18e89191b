"""The `fewshot` command: help for every verb, `list`, and the whole path on the tiny store."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from fewshot import cli
from fewshot.cli import main
from fewshot.data.store import Store


def test_top_level_help_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in cli.COMMANDS)


@pytest.mark.parametrize("verb", cli.COMMANDS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    assert f"fewshot {verb}" in capsys.readouterr().out


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "fewshot", "verify", "/nonexistent/store"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("fewshot: error: data folder /nonexistent/store does not exist")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_building_the_parser_does_not_import_torch():
    """`fewshot --help` (and every verb's parser) stays fast: torch loads only when a verb runs."""
    code = ("import sys; from fewshot.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'fewshot.train.loop', 'fewshot.models', 'pandas', 'matplotlib') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_building_a_conv4_does_not_import_torchvision():
    """Only the resnet18 backbone needs torchvision, which pulls in torch._dynamo (seconds at start-up);
    loading the backbone registry to build a Conv-4 must not import it."""
    code = ("import sys; from fewshot.models.registry import create_backbone; create_backbone('conv4', 1); "
            "print('torchvision' in sys.modules); create_backbone('resnet18', 1); print('torchvision' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_list_names_registered_parts(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in out.splitlines() if ":" in line}
    assert "protonet" in lines["method configs"]
    assert "prototypical" in lines["learners"]
    assert "conv4" in lines["backbones"]
    assert "synthetic" in lines["datasets"] and "omniglot" in lines["datasets"]


def test_prepare_list_names_formats(capsys):
    assert main(["prepare", "--list"]) == 0
    out = capsys.readouterr().out
    assert "omniglot:" in out and "original-zips" in out and "synthetic:" in out


def test_unknown_config_key_exits_2_with_a_suggestion(tiny_store, tmp_path, capsys):
    code = main(["train", "--data", str(tiny_store), "--out", str(tmp_path / "run"), "optim.lrr=0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "fewshot: error: override: unknown config key 'optim.lrr'; did you mean 'optim.lr'?\n"
    assert not (tmp_path / "run").exists()


def test_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["episodes", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "e.npz")]) == 2
    assert main(["eval", "--episodes", str(tmp_path / "e.npz")]) == 2  # neither --run nor --backbone
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("fewshot: error: ") for line in err)
    assert "exactly one of --run" in err[1]


def _check_record(record: dict, method: str, setting: str, count: int, store_checksum: str) -> None:
    assert record["method"] == method and record["setting"] == setting
    assert record["dataset"] == "synthetic" and record["split"] == "test"
    assert record["n_episodes"] == count == len(record["per_episode_accuracy"])
    accuracies = np.array(record["per_episode_accuracy"])
    # mean and ci95 are the field's convention recomputed from the stored per-episode accuracies.
    assert record["mean"] == pytest.approx(100 * accuracies.mean(), abs=1e-3)
    assert record["ci95"] == pytest.approx(196 * accuracies.std(ddof=0) / math.sqrt(count), abs=1e-3)
    provenance = record["provenance"]
    for key in ("config", "commit", "store_checksum", "episodes_checksum", "seed", "time"):
        assert key in provenance, key
    assert provenance["store_checksum"] == store_checksum
    assert provenance["commit"] and provenance["time"]


def test_end_to_end_on_the_tiny_store(tiny_store, tiny_train_overrides, tmp_path, capsys):
    episodes = tmp_path / "test-3w1s.npz"
    assert main(["episodes", "--data", str(tiny_store), "--ways", "3", "--shots", "1", "--queries", "2",
                 "--count", "20", "--seed", "1", "--out", str(episodes)]) == 0
    assert "wrote 20 3w1s episodes" in capsys.readouterr().out
    # The same file again is refused; --force replaces it.
    assert main(["episodes", "--data", str(tiny_store), "--out", str(episodes)]) == 2
    assert "already exists" in capsys.readouterr().err

    overrides = [f"{k}={v}" for k, v in tiny_train_overrides.items()]
    run = tmp_path / "run"
    assert main(["train", "--config", "protonet", "--data", str(tiny_store), "--out", str(run), "--no-progress",
                 "--device", "cpu", *overrides]) == 0
    assert f"trained protonet for 4 steps into {run}" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["backbone"]["hidden"] == 8

    results = tmp_path / "results"
    assert main(["eval", "--run", str(run), "--episodes", str(episodes), "--out", str(results),
                 "--device", "cpu"]) == 0
    assert main(["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episodes),
                 "--out", str(results / "pixels.json"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("protonet synthetic 3w1s (20 episodes): ")
    assert out[1].startswith("pixels synthetic 3w1s (20 episodes): ")

    files = sorted(results.glob("*.json"))
    assert len(files) == 2
    records = {json.loads(f.read_text())["method"]: json.loads(f.read_text()) for f in files}
    checksum = Store(tiny_store).split("test").checksum
    episodes_checksum = records["pixels"]["provenance"]["episodes_checksum"]
    for method, record in records.items():
        _check_record(record, method, "3w1s", 20, checksum)
        assert record["provenance"]["episodes_checksum"] == episodes_checksum
    assert records["protonet"]["provenance"]["config"]["name"] == "protonet"
    assert records["protonet"]["provenance"]["seed"] == 0
    assert records["protonet"]["provenance"]["run"] == str(run)
    assert records["pixels"]["provenance"]["config"]["backbone"] == "pixels"

    assert main(["table", str(results), "--format", "md"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| method | 3w1s |"
    rows = [line for line in table[2:] if line.startswith("| ")]
    cells = {line.split("|")[1].strip(): line.split("|")[2].strip().strip("*") for line in rows}
    assert list(cells) == ["protonet", "pixels"]  # the pixel floor is the last row
    for method, record in records.items():
        assert cells[method] == f"{record['mean']:.2f} +- {record['ci95']:.2f}"
