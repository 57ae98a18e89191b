"""Heads through the harness: `fewshot eval --head`, records, tables, `compare`, `bench --head`, an ablation
sweeping eval.head (one run for every head), `fewshot list`."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.bench import bench
from fewshot.cli import main
from fewshot.data.store import Store
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.evaluate.run import evaluate_files, evaluate_pixels
from fewshot.evaluate.heads import create_head
from fewshot.results.records import load_records
from fewshot.results.tables import format_table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ablation_spec import write_ablation_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def episode_file(tiny_store, tmp_path):
    path = tmp_path / "ep.npz"
    make_episode_file(Store(tiny_store).split("test"), 3, 2, 2, 30, seed=0).save(path)
    return path


def test_default_records_equal_records_from_before_heads(tiny_store, episode_file):
    files = [load_episode_file(episode_file)]
    default = evaluate_pixels(tiny_store, files, "cpu")[0]
    explicit = evaluate_pixels(tiny_store, files, "cpu", eval_settings={"head": "nearest_prototype"})[0]
    assert default["per_episode_accuracy"] == explicit["per_episode_accuracy"]
    assert default["provenance"]["config"] == {"backbone": "pixels", "distance": "euclidean"}  # as before heads
    assert default["head"] == {"name": "nearest_prototype", "norm": "UN", "distance": "euclidean",
                               "label": "nearest_prototype"}


def test_simpleshot_takes_its_mean_from_the_training_split(tiny_store, episode_file):
    store = Store(tiny_store)
    files = [load_episode_file(episode_file)]
    record = evaluate_pixels(tiny_store, files, "cpu", eval_settings={"head": "simpleshot"})[0]
    assert record["head"]["name"] == "simpleshot" and record["head"]["norm"] == "CL2N"
    assert record["provenance"]["config"]["eval"] == {"head": "simpleshot"}
    # The same numbers by hand: the train split's mean pixel, subtracted from the test split, then L2N.
    train = torch.from_numpy(np.array(store.split("train").images)).float().flatten(1) / 255
    test = store.split("test")
    cache = torch.from_numpy(np.array(test.images)).float().flatten(1) / 255
    head = create_head("simpleshot")
    head.fit_split(train)
    support, query = files[0].resolve(test).rows(test.class_offsets)
    assert np.allclose(record["per_episode_accuracy"], head.score(cache, support, query), atol=1e-6)
    # With another "training split" the mean, and so the answer, changes: the split is really used.
    shifted = evaluate_files(lambda x: x.flatten(1), store, files, "pixels", torch.device("cpu"),
                             head=create_head("simpleshot"), train_split="val")[0]
    assert shifted["per_episode_accuracy"] != record["per_episode_accuracy"]


def test_eval_command_heads_records_table_and_compare(tiny_store, episode_file, tmp_path, capsys):
    results = tmp_path / "results"
    for head in ("nearest_prototype", "logistic", "simpleshot"):
        assert main(["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episode_file),
                     "--head", head, "--out", str(results)]) == 0
    assert main(["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episode_file),
                 "eval.head=logistic", "eval.head_C=0.1", "--out", str(results)]) == 0
    out = capsys.readouterr().out
    assert "pixels [logistic(C=0.1)] synthetic 3w2s" in out
    records = load_records([results])
    assert sorted(r["head"]["label"] for r in records) == ["logistic", "logistic(C=0.1)", "nearest_prototype",
                                                          "simpleshot"]
    table = format_table(records)
    for label in ("pixels + logistic ", "pixels + logistic(C=0.1) ", "pixels + nearest_prototype ",
                  "pixels + simpleshot "):
        assert f"| {label}" in table
    by_head = {r["head"]["label"]: r for r in records}
    assert main(["compare", by_head["logistic"]["_path"], by_head["nearest_prototype"]["_path"]]) == 0
    out = capsys.readouterr().out
    assert "A pixels [head logistic]" in out and "B pixels [head nearest_prototype]" in out
    a = np.array(by_head["logistic"]["per_episode_accuracy"])
    b = np.array(by_head["nearest_prototype"]["per_episode_accuracy"])
    assert f"A - B: {100 * (a - b).mean():+.2f} percent points" in out


def test_eval_command_refuses_bad_head_settings(tiny_store, episode_file, capsys):
    base = ["eval", "--backbone", "pixels", "--data", str(tiny_store), "--episodes", str(episode_file)]
    assert main([*base, "--head", "logistc"]) == 2
    assert "unknown head 'logistc' (did you mean 'logistic'?)" in capsys.readouterr().err
    assert main([*base, "optim.lr=0.1"]) == 2
    assert "optim.lr is not a head setting" in capsys.readouterr().err
    assert main([*base, "eval.head_C=-1", "--head", "logistic"]) == 2
    assert "eval.head_C must be positive" in capsys.readouterr().err


def test_bench_with_two_heads_trains_once(tiny_store, tiny_train_overrides, tmp_path):
    options = dict(ways=[3], shots=[1], seeds=[0], results=tmp_path / "results", runs=tmp_path / "runs",
                   overrides=[f"{k}={v}" for k, v in tiny_train_overrides.items()], device_name="cpu",
                   progress=False, queries=2, count=12)
    log: list[str] = []
    first = bench("protonet", tiny_store, log=log.append, **options)
    assert sum("training" in line for line in log) == 1
    log.clear()
    second = bench("protonet", tiny_store, log=log.append, head="logistic", **options)
    assert not any("training" in line for line in log) and any("reusing finished run" in line for line in log)
    assert (first[0]["head"]["name"], second[0]["head"]["name"]) == ("nearest_prototype", "logistic")
    assert first[0]["provenance"]["run"] == second[0]["provenance"]["run"]
    log.clear()
    again = bench("protonet", tiny_store, log=log.append, head="logistic", **options)  # nothing measured twice
    assert any("record exists" in line for line in log) and again[0]["_path"] == second[0]["_path"]
    assert len(list((tmp_path / "results").glob("*.json"))) == 2


def test_an_ablation_sweeps_the_head_on_one_run(tiny_store, tiny_train_overrides, tmp_path):
    from fewshot.ablate import expand, load_spec, run_ablation

    overrides = {**tiny_train_overrides, "train.val_every": 0, "train.checkpoint_every": 3, "train.steps": 3}
    spec_path = write_ablation_spec(tmp_path / "spec.toml", tiny_store, overrides,
                                    '"eval.head" = ["nearest_prototype", "simpleshot", "logistic"]', name="heads")
    spec = load_spec(spec_path)
    points = expand(spec)
    assert len({p.digest for p in points}) == 3
    outcome = run_ablation(spec, log=lambda line: None)
    assert outcome.ran == 3 and not outcome.failed
    assert len(list((tmp_path / "out" / "runs").glob("*/protonet-*"))) == 1  # one run served every head
    heads = sorted(r["head"]["name"] for r in outcome.records)
    assert heads == ["logistic", "nearest_prototype", "simpleshot"]
    table = outcome.table.read_text()
    assert "| eval.head=logistic |" in table and "| eval.head=simpleshot |" in table


def test_list_shows_the_heads(capsys):
    assert main(["list"]) == 0
    assert "heads:          finetune, logistic, nearest_prototype, simpleshot" in capsys.readouterr().out
