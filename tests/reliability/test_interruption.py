"""Interruption: checkpoints are atomic and complete, a run killed with SIGKILL resumes to the same weights,
records are never torn, and a killed `ablate` or stopped `bench` keeps its finished records and picks up.

The kills are real: `python -m fewshot ...` in a subprocess, `os.kill(pid, SIGKILL)`, no cleanup handler runs.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import fewshot.atomic as atomic
import fewshot.results.records as records_module
import fewshot.train.loop as loop
from fewshot.ablate import load_spec, run_ablation
from fewshot.bench import bench
from fewshot.cli import main
from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.results.records import RECORD_FORMAT, load_record, make_record, write_record
from fewshot.runs.checkpoint import load_checkpoint, save_checkpoint

TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.log_every": 1,
        "train.device": "cpu", "train.channels_last": False}
# A run long enough to be killed in the middle: a checkpoint every step, no validation.
KILL_STEPS = 40
KILL_ARGS = [f"{k}={v}" for k, v in {**TINY, "train.steps": KILL_STEPS, "train.checkpoint_every": 1,
                                      "train.val_every": 0}.items()]
# The subprocesses and this process compute with one thread each, so their float sums agree bit for bit.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WAIT_SECONDS = 300  # a busy 2-core machine can take a minute just to import torch


@contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fewshot", *map(str, argv)], env=ONE_THREAD_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready, what: str) -> None:
    """Poll `ready()` until true, then SIGKILL the process; fail if it ended first."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {WAIT_SECONDS} s")
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, f"the process ended by itself before the kill ({what})"


def checkpoint_step(path: Path) -> int:
    """The step saved in a checkpoint, 0 while there is none (a reader never sees a half-written one)."""
    if not path.exists():
        return 0
    return load_checkpoint(path)["step"]


def log_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


# --- training -------------------------------------------------------------------------------------------


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tiny_store, tmp_path):
    common = ["train", "--data", str(tiny_store), "--no-progress", "--device", "cpu", *KILL_ARGS]
    straight, run = tmp_path / "straight", tmp_path / "killed"
    with one_thread():
        assert main([*common, "--out", str(straight)]) == 0

    last = run / "checkpoints" / "last.pt"
    process = start([*common, "--out", run])
    kill_when(process, lambda: checkpoint_step(last) >= 3, "a checkpoint of step 3")
    killed_at = checkpoint_step(last)  # complete and loadable, whatever the kill interrupted
    assert 3 <= killed_at < KILL_STEPS
    assert json.loads((run / "run.json").read_text())["status"] == "running"

    with one_thread():
        assert main([*common, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert log_steps(run) == list(range(1, KILL_STEPS + 1))  # steps after the checkpoint redone, not duplicated

    resumed, reference = load_checkpoint(last), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == KILL_STEPS
    assert resumed["model"].keys() == reference["model"].keys()
    for name, tensor in reference["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    # Adam's moments too: the resumed run is the uninterrupted run, not merely close to it.
    for index, moments in reference["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(resumed["optimizer"]["state"][index][key], value), (index, key)
    assert resumed["scheduler"] == reference["scheduler"] and resumed["sampler"] == reference["sampler"]
    assert torch.equal(resumed["torch_rng"], reference["torch_rng"])


def test_checkpoint_interval_and_contents_include_the_center_bank(tiny_store, tmp_path, monkeypatch):
    saved: list[tuple[str, int]] = []
    original = loop.save_checkpoint

    def recording(path, state):
        saved.append((Path(path).name, state["step"]))
        original(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", recording)
    config = load_config("center-cir", {**TINY, "batch.classes": 4, "batch.per_class": 2, "train.steps": 7,
                                        "train.checkpoint_every": 3, "train.val_every": 0,
                                        "loss.center_update": "ema", "cir.means": "memory"})
    with one_thread():
        loop.train(config, tiny_store, tmp_path / "run", progress=False)
    assert [s for s in saved if s[0] == "last.pt"] == [("last.pt", 3), ("last.pt", 6), ("last.pt", 7)]

    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(state) == {"model", "optimizer", "scheduler", "sampler", "torch_rng", "cuda_rng", "step", "best"}
    assert state["cuda_rng"] is None  # a CPU run; on CUDA the GPU generator's state is saved and restored
    # The center bank (an EMA buffer here) and CIR's class-mean memory travel inside the model's state.
    assert state["model"]["center_loss.centers"].shape == (8, 64) and state["model"]["center_loss.centers"].any()
    assert state["model"]["cir.memory_seen"].any()
    assert state["scheduler"]["last_epoch"] == 7 and state["optimizer"]["state"]
    assert state["sampler"]["bit_generator"] == "PCG64"
    assert state["torch_rng"].dtype == torch.uint8


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"step": 2, "model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # the temporary file is gone too


def test_resume_ignores_a_temporary_file_left_by_a_kill(tiny_store, tmp_path, monkeypatch):
    config = load_config("protonet", {**TINY, "train.steps": 3, "train.checkpoint_every": 1, "train.val_every": 0})
    original_next = loop.BatchSource.next
    calls = {"n": 0}

    def stopped_before_step_3(self, device, channels_last):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original_next(self, device, channels_last)

    with one_thread():
        loop.train(config, tiny_store, tmp_path / "straight", progress=False)
        monkeypatch.setattr(loop.BatchSource, "next", stopped_before_step_3)
        with pytest.raises(KeyboardInterrupt):
            loop.train(config, tiny_store, tmp_path / "run", progress=False)
        monkeypatch.setattr(loop.BatchSource, "next", original_next)
        checkpoints = tmp_path / "run" / "checkpoints"
        assert load_checkpoint(checkpoints / "last.pt")["step"] == 2
        # What a SIGKILL inside save_checkpoint leaves: a half-written hidden temporary beside last.pt.
        (checkpoints / ".last.pt.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half")
        loop.train(config, tiny_store, tmp_path / "run", resume=True, progress=False)
    resumed = load_checkpoint(checkpoints / "last.pt")
    reference = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert resumed["step"] == 3
    assert all(torch.equal(resumed["model"][k], v) for k, v in reference["model"].items())


# --- records --------------------------------------------------------------------------------------------


def _record(method: str = "m") -> dict:
    meta = {"ways": 5, "shots": 1, "queries": 15, "dataset": "synthetic", "split": "test", "checksum": "ab" * 32,
            "seed": 0}
    return make_record(method, [1.0, 0.5, 0.75], meta, "cd" * 32, {"seed": 0})


def test_a_record_write_stopped_midway_leaves_nothing(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_record(_record("kept"), results)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_record(_record("lost"), results)
    [only] = list(results.iterdir())  # no half record, no temporary file
    assert load_record(only)["method"] == "kept"


def test_a_stopped_bench_keeps_finished_records_and_picks_up(tiny_store, tmp_path, monkeypatch):
    options = dict(ways=[3], shots=[1, 2], seeds=[0, 1], results=tmp_path / "results", runs=tmp_path / "runs",
                   overrides=[f"{k}={v}" for k, v in {**TINY, "train.steps": 3, "train.val_every": 0,
                                                      "train.checkpoint_every": 3}.items()],
                   device_name="cpu", progress=False, queries=2, count=10)
    original_write = records_module.write_json_atomic
    calls = {"records": 0}

    def interrupted(fd):
        raise KeyboardInterrupt

    def third_record_interrupted_while_written(path, obj):
        calls["records"] += 1
        if calls["records"] == 3:  # seed 0's two records are written; seed 1's first is being written
            monkeypatch.setattr(atomic.os, "fsync", interrupted)
        original_write(path, obj)

    monkeypatch.setattr(records_module, "write_json_atomic", third_record_interrupted_while_written)
    with one_thread(), pytest.raises(KeyboardInterrupt):
        bench("protonet", tiny_store, log=lambda line: None, **options)
    monkeypatch.undo()
    assert calls["records"] == 3
    kept = {p: p.read_bytes() for p in (tmp_path / "results").iterdir()}
    assert len(kept) == 2 and all(load_record(p)["provenance"]["seed"] == 0 for p in kept)

    log: list[str] = []
    with one_thread():
        records = bench("protonet", tiny_store, log=log.append, **options)
    assert sorted((r["provenance"]["seed"], r["setting"]) for r in records) == [
        (0, "3w1s"), (0, "3w2s"), (1, "3w1s"), (1, "3w2s")]
    assert sum("record exists" in line for line in log) == 2
    assert any("reusing finished run" in line for line in log)  # seed 1 had finished training
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert len(list((tmp_path / "results").iterdir())) == 4


def test_an_ablation_killed_with_sigkill_keeps_complete_records_and_picks_up(tiny_store, tmp_path):
    overrides = {**TINY, "train.steps": 12, "train.checkpoint_every": 2, "train.val_every": 0}
    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join([
        'name = "killed"', 'config = "protonet"', f'data = "{tiny_store}"', f'out = "{tmp_path / "out"}"',
        "seeds = [0]", "[overrides]", *(f'"{k}" = {json.dumps(v)}' for k, v in overrides.items()),
        "[grid]", '"optim.lr" = [0.001, 0.002, 0.003]',
        "[episodes]", "ways = [3]", "shots = [1]", "queries = 2", "count = 10", ""]))
    results = tmp_path / "out" / "results"
    process = start(["ablate", spec, "--device", "cpu"])
    kill_when(process, lambda: results.is_dir() and any(results.glob("*.json")), "a first record")

    kept = {p: p.read_bytes() for p in results.glob("*.json")}
    assert 1 <= len(kept) < 3
    for path in kept:  # every visible record is whole
        assert load_record(path)["format"] == RECORD_FORMAT and load_record(path)["n_episodes"] == 10
    stopped_runs = [r for r in (tmp_path / "out" / "runs").glob("*/protonet-*")
                    if (r / "checkpoints" / "last.pt").exists() and (r / "run.json").exists()
                    and json.loads((r / "run.json").read_text())["status"] == "running"]

    log: list[str] = []
    with one_thread():
        outcome = run_ablation(load_spec(spec), device_name="cpu", log=log.append)
    assert (outcome.done_before, outcome.ran, outcome.failed) == (len(kept), 3 - len(kept), [])
    assert all(p.read_bytes() == data for p, data in kept.items())  # finished points were not redone
    assert sorted(load_record(p)["method"] for p in results.glob("*.json")) == sorted(p.label for p in outcome.points)
    assert sum("(resumed)" in line for line in log) == len(stopped_runs)
