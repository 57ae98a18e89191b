"""Processes: workers die with the command that started them, and a folder another live process works in
is refused with that process's pid (an fcntl lock, which a crash cannot leave stuck).

The kills are real (SIGKILL of a `python -m fewshot ...` subprocess); the process tree is read from /proc.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fewshot.ablate import load_spec, run_ablation
from fewshot.bench import index_records, train_or_reuse
from fewshot.cli import main
from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.locks import LOCK_NAME, hold_folder, holder

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to see processes")

TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.log_every": 1,
        "train.device": "cpu", "train.channels_last": False, "train.val_every": 0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WAIT = 300  # a busy 2-core machine can take a minute to import torch in each process


def fewshot_process(argv: list) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fewshot", *map(str, argv)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {WAIT} s")
        time.sleep(0.02)


def running(pid: int) -> bool:
    """Alive and not a zombie (in a container nobody may reap an orphan, so a dead one can linger as Z)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def assert_all_end(pids: set[int], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if running(p)]
    for p in survivors:  # do not leave them to the rest of the suite
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"processes outlived their killed parent: {survivors}"


def spec_file(tmp_path: Path, store: Path, lrs: list[float], steps: int) -> Path:
    overrides = {**TINY, "train.steps": steps, "train.checkpoint_every": 2}
    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join([
        'name = "procs"', 'config = "protonet"', f'data = "{store}"', f'out = "{tmp_path / "out"}"',
        "seeds = [0]", "[overrides]", *(f'"{k}" = {json.dumps(v)}' for k, v in overrides.items()),
        "[grid]", f'"optim.lr" = {json.dumps(lrs)}',
        "[episodes]", "ways = [3]", "shots = [1]", "queries = 2", "count = 10", ""]))
    return spec


def log_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


# --- workers die with their parent -----------------------------------------------------------------------


def test_killing_an_ablate_with_two_jobs_kills_its_workers_and_a_rerun_completes_without_duplicates(
        tiny_store, tmp_path):
    lrs, steps = [0.001, 0.002, 0.003, 0.004], 60
    spec = spec_file(tmp_path, tiny_store, lrs, steps)
    runs = tmp_path / "out" / "runs"
    process = fewshot_process(["ablate", spec, "--jobs", "2", "--device", "cpu"])
    # Both workers are training (two run folders have a checkpoint, none has finished): kill the parent.
    wait_for(lambda: len(list(runs.glob("*/protonet-*/checkpoints/last.pt"))) >= 2, process, "two checkpoints")
    workers = descendants(process.pid)
    assert len(workers) >= 2, workers
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert_all_end(workers)

    log: list[str] = []
    outcome = run_ablation(load_spec(spec), jobs=2, device_name="cpu", log=log.append)
    assert outcome.failed == [] and outcome.done_before + outcome.ran == len(lrs)
    records = list((tmp_path / "out" / "results").glob("*.json"))
    assert len(records) == len(lrs) == len(index_records(tmp_path / "out" / "results"))  # one a point
    for run in runs.glob("*/protonet-*"):
        assert log_steps(run) == list(range(1, steps + 1)), run  # every step logged once, in order
        assert json.loads((run / "run.json").read_text())["status"] == "finished"


DECODER = r"""
import sys, time
from pathlib import Path
from fewshot.data.images import decode_stream
paths = sorted(Path(sys.argv[1]).glob("*.png"))
stream = decode_stream(paths * 200, (8, 8), workers=2, chunk=4)
next(stream)
print("decoding", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_a_command_that_decodes_with_a_pool_ends_the_pool_and_its_forkserver(sig, tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    process = subprocess.Popen([sys.executable, "-c", DECODER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "decoding", process.stderr.read()
    time.sleep(0.5)
    helpers = descendants(process.pid)  # the forkserver and, below it, the two decoders
    assert len(helpers) >= 3, helpers
    os.kill(process.pid, sig)
    process.wait(timeout=60)
    assert_all_end(helpers)


WORKER = r"""
import os, sys, time
from fewshot.lifeline import die_with_parent
from fewshot.lifeline import set_parent_death_signal
import fewshot.lifeline as lifeline
if sys.argv[1] == "watchdog-only":
    lifeline.set_parent_death_signal = lambda sig=9: False  # as on a system without prctl
die_with_parent(int(sys.argv[2]))
print("ready", flush=True)
time.sleep(600)
"""
PARENT = r"""
import subprocess, sys, time, os
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())], stdout=subprocess.PIPE,
                         text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("mode", ["prctl-and-watchdog", "watchdog-only"])
def test_a_worker_ends_when_its_parent_is_killed(mode, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WORKER, mode], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert running(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=60)
    assert_all_end({child}, seconds=10)


# --- folder locks -----------------------------------------------------------------------------------------


HOLDER = r"""
import sys, time
from fewshot.locks import hold_folder
with hold_folder(sys.argv[1], "test"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held", process.stderr.read()
    return process


def test_a_lock_names_its_holder_and_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    folder = tmp_path / "work"
    other = hold_in_another_process(folder)
    try:
        assert holder(folder)["pid"] == other.pid
        with pytest.raises(FewshotError, match=f"in use by process {other.pid}"):
            with hold_folder(folder):
                pass
    finally:
        other.kill()
        other.wait()
    with hold_folder(folder):  # the kernel dropped the dead holder's lock: taken at once
        assert holder(folder)["pid"] == os.getpid()
        with hold_folder(folder):  # reentrant within one process
            pass
    assert folder.is_dir() and not (folder / LOCK_NAME).exists()  # a released lock leaves no file


def test_a_refused_lock_leaves_no_folder_behind(tmp_path):
    with hold_folder(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # created for the lock alone, removed with it


def test_two_trains_on_one_out_one_proceeds_the_other_names_it(tiny_store, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", tiny_store, "--out", run, "--no-progress",
            *(f"{k}={v}" for k, v in {**TINY, "train.steps": 4000, "train.checkpoint_every": 1}.items())]
    first = fewshot_process(args)
    try:
        wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), first, "a first checkpoint")
        assert main([str(a) for a in args]) == 2
        error = capsys.readouterr().err
        assert f"in use by process {first.pid}" in error and len(error.splitlines()) == 1, error
        assert main([str(a) for a in args + ["--resume"]]) == 2  # resuming beside it is refused too
        assert f"in use by process {first.pid}" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    with hold_folder(run):  # the killed run's lock went with it (so --resume would proceed)
        assert (run / "checkpoints" / "last.pt").exists()


def test_two_ablates_on_one_out_one_proceeds_the_other_names_it(tiny_store, tmp_path, capsys):
    spec = spec_file(tmp_path, tiny_store, [0.001], 2)
    other = hold_in_another_process(tmp_path / "out")
    try:
        assert main(["ablate", str(spec), "--device", "cpu"]) == 2
        error = capsys.readouterr().err
        assert f"out is in use by process {other.pid}" in error and len(error.splitlines()) == 1, error
        assert not (tmp_path / "out" / "results").exists()  # refused before any work
    finally:
        other.kill()
        other.wait()
    outcome = run_ablation(load_spec(spec), device_name="cpu", log=lambda line: None)
    assert outcome.ran == 1 and outcome.failed == []


def test_bench_refuses_a_run_folder_another_process_is_training(tiny_store, tmp_path):
    run = tmp_path / "runs" / "a-run"
    config = load_config("protonet", {**TINY, "train.steps": 2, "train.checkpoint_every": 1})
    other = hold_in_another_process(run)
    try:
        with pytest.raises(FewshotError, match=f"in use by process {other.pid}"):
            train_or_reuse(config, tiny_store, run, progress=False, device_name="cpu", log=lambda line: None)
    finally:
        other.kill()
        other.wait()
    assert train_or_reuse(config, tiny_store, run, progress=False, device_name="cpu", log=lambda line: None) == "trained"


PARTIAL_WRITER = r"""
import sys, time
from fewshot.atomic import atomic_directory
with atomic_directory(sys.argv[1]) as tmp:
    (tmp / "big.npy").write_bytes(b"x" * 100000)
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_folder_half_written_by_a_killed_command_is_removed_by_the_next_one(tmp_path):
    from fewshot.atomic import atomic_directory

    def writer() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", PARTIAL_WRITER, str(tmp_path / "store")], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "writing", process.stderr.read()
        return process

    killed, alive = writer(), writer()
    killed.kill()
    killed.wait()
    try:
        partials = sorted(p.name for p in tmp_path.glob(".store.*.partial"))
        assert len(partials) == 2  # a kill -9 cleans nothing up itself
        with atomic_directory(tmp_path / "store", replace=True) as tmp:
            (tmp / "done").write_text("ok")
        left = sorted(p.name for p in tmp_path.glob(".store.*.partial"))
        assert left == [p for p in partials if p.startswith(f".store.{alive.pid}-")]  # the live writer's stays
        assert (tmp_path / "store" / "done").read_text() == "ok"
    finally:
        alive.kill()
        alive.wait()
