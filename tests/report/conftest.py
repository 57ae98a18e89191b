"""Fixture records and runs for the report: three tiny trained runs, records on two episode files, the
pixel floor, hand-made variable-way records, an ablation's records, and a record whose run is elsewhere."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# A run of a few steps on the tiny store, about a second on one core (as TINY_TRAIN_OVERRIDES in tests/conftest).
TRAIN = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.steps": 4,
         "train.val_every": 2, "train.val_episodes": 5, "train.val_ways": 3, "train.val_shots": 1,
         "train.val_queries": 2, "train.checkpoint_every": 2, "train.log_every": 1, "train.device": "cpu",
         "train.channels_last": False}
VARIABLE = {"ways": 10, "shots": 1, "queries": 5, "dataset": "synthetic", "split": "test", "checksum": "v" * 64,
            "seed": 3}


@pytest.fixture(scope="session")
def report_inputs(tiny_store, tmp_path_factory) -> dict:
    import torch

    from fewshot.config import load_config
    from fewshot.data.store import Store
    from fewshot.episodes.files import load_episode_file, make_episode_file
    from fewshot.evaluate.run import evaluate_pixels, evaluate_run
    from fewshot.results.records import make_record, write_record
    from fewshot.train.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report-inputs")
    test = Store(tiny_store).split("test")
    files = []
    for shots in (1, 2):
        path = root / "episodes" / f"tiny-3w{shots}s.npz"
        make_episode_file(test, 3, shots, 2, 30, seed=0, generated_by="report fixture").save(path)
        files.append(load_episode_file(path))
    results, runs = root / "results", root / "runs"
    specs = [("proto-a", 0, {}), ("proto-a", 1, {}), ("proto-b", 0, {"optim.lr": 0.01})]
    run_dirs = {}
    for name, seed, extra in specs:
        config = load_config("protonet", {**TRAIN, **extra, "name": name, "seed": seed})
        run_dir = runs / f"{name}-seed{seed}"
        train(config, tiny_store, run_dir, progress=False, device_name="cpu")
        run_dirs[(name, seed)] = run_dir
        for record in evaluate_run(run_dir, files, tiny_store, "cpu"):
            write_record(record, results)
    for record in evaluate_pixels(tiny_store, files, "cpu"):
        write_record(record, results)

    # Variable-way episodes (another engineer's episode files): per-episode ways in the record.
    variable = root / "variable"
    rng = np.random.default_rng(0)
    ways = np.array([3, 5, 10] * 20)
    for method, skill in (("wide", 0.9), ("narrow", 0.7)):
        accuracy = np.clip(skill - 0.03 * ways + rng.normal(0, 0.05, ways.size), 0, 1)
        write_record(make_record(method, accuracy, VARIABLE, "s" * 64, {"seed": 0}, run=None,
                                 extra={"episode_ways": ways.tolist()}), variable)

    # An ablation of the learning rate with a baseline point, its records naming the trained runs.
    ablation = root / "ablation" / "results"
    meta = {"ways": 3, "shots": 1, "queries": 2, "dataset": "synthetic", "split": "test", "checksum": "a" * 64,
            "seed": 0}
    points = [("baseline", {"cir.enabled": False}, 0.5), ("optim.lr=0.001", {"optim.lr": 0.001}, 0.6),
              ("optim.lr=0.01", {"optim.lr": 0.01}, 0.7)]
    for (label, point, skill), run_dir in zip(points, [run_dirs[("proto-a", 0)], run_dirs[("proto-a", 1)],
                                                       run_dirs[("proto-b", 0)]]):
        accuracy = np.clip(skill + rng.normal(0, 0.1, 40), 0, 1)
        config = load_config("protonet", {**TRAIN, "name": "ablated", **point})
        write_record(make_record(label, accuracy, meta, "s" * 64, config, run=str(run_dir),
                                 extra={"ablation": {"spec": "lr-sweep", "point": point, "seed": 0}}), ablation)

    # A record whose run folder is not on this machine (as results/omniglot's committed records).
    elsewhere = root / "elsewhere"
    write_record(make_record("far", np.array([0.5, 1.0] * 15), files[0].meta,
                             "s" * 64, {"seed": 0}, run="work-runs/omniglot-v3/far-away"), elsewhere)
    torch.set_num_threads(threads)
    return {"root": root, "results": results, "runs": runs, "variable": variable, "ablation": ablation.parent,
            "elsewhere": elsewhere, "files": files, "run_dirs": run_dirs}
