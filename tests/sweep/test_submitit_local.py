"""Sweeps through submitit's real job path: LocalExecutor pickles each point's job and runs it in its own
subprocess (`python -m submitit.core._submit`) as a Slurm node would."""
from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fewshot.ablate import ablation_status, expand, load_spec, run_ablation
from fewshot.bench import run_folder
from fewshot.cli import main
from fewshot.data.store import Store
from fewshot.results.records import RECORD_FORMAT, load_record
from fewshot.sweep import ExecutorOptions
from fewshot.sweep.state import read_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ablation_spec import write_ablation_spec  # noqa: E402

pytest.importorskip("submitit")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SUBMITIT_LOCAL = ExecutorOptions(name="submitit-local", cpus_per_job=1)


def write_spec(path: Path, store: Path, tiny: dict, grid: str, extra: str = "", checkpoint_every: int = 3) -> Path:
    tiny = {**tiny, "train.val_every": 0, "train.checkpoint_every": checkpoint_every, "train.steps": 3,
            "train.log_every": 1}
    overrides = {k: v for k, v in tiny.items() if f'"{k}"' not in grid}
    return write_ablation_spec(path, store, overrides, grid, extra='device = "cpu"\n' + extra)


def wait_for(condition, what: str, timeout: float = 120.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def records(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def test_a_grid_completes_and_a_failing_point_is_reported(tiny_store, tiny_train_overrides, tmp_path, capsys):
    # A 2 x 2 grid, and a baseline whose ways (99) the 8 training classes cannot supply: it fails at training.
    spec = write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides,
                      '"optim.lr" = [0.001, 0.01]\n"episodes.ways" = [3, 4]',
                      extra='baselines = [{ "episodes.ways" = 99 }]')
    argv = ["ablate", str(spec), "--executor", "submitit-local", "--cpus-per-job", "1", "--wait"]
    assert main(argv) == 1  # one point failed; the four others finished all the same
    out = capsys.readouterr().out
    assert "running 5 now on submitit-local" in out and "submitted 5 point(s)" in out
    assert "4 of 5 points finished, 1 failed" in out
    assert "FAILED baseline seed 0: episodes.ways=99 is more than the 8 classes of the train split" in out
    results = tmp_path / "out" / "results"
    kept = records(results)
    assert len(kept) == 4 and all(load_record(p)["format"] == RECORD_FORMAT for p in kept)
    table = (tmp_path / "out" / "table.md").read_text()
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| optim.lr=")]
    assert rows == ["| optim.lr=0.001, episodes.ways=3", "| optim.lr=0.001, episodes.ways=4",
                    "| optim.lr=0.01, episodes.ways=3", "| optim.lr=0.01, episodes.ways=4"]

    assert main(["ablate", str(spec), "--status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0] == "ablation grid: 5 points: 4 done, 0 running, 1 failed, 0 pending"
    failed = next(i for i, line in enumerate(status) if line.lstrip().startswith("failed"))
    assert "baseline seed 0" in status[failed]
    assert status[failed + 1].split() == ["error:", "episodes.ways=99", "is", "more", "than", "the", "8", "classes",
                                          "of", "the", "train", "split;", "use", "episodes.ways=8", "or", "fewer"]
    log = Path(status[failed + 2].split("log:")[1].strip())
    assert log.name.endswith("_0_log.err") and "ways=99 is more than" in log.read_text().splitlines()[-1]
    assert sum(line.lstrip().startswith("done") for line in status) == 4
    # (Running the command again submits the failed point alone: see the next test.)


def test_a_killed_job_is_resubmitted_and_a_preempted_one_requeues_itself(tiny_store, tiny_train_overrides,
                                                                         tmp_path):
    # Two points: one trains 3 steps; the other 300, with a checkpoint every 10 steps, long enough to stop.
    spec = load_spec(write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides, '"train.steps" = [3, 300]',
                                checkpoint_every=10))
    results = tmp_path / "out" / "results"
    first = run_ablation(spec, executor=SUBMITIT_LOCAL, log=lambda line: None)  # submits, does not wait
    assert (first.submitted, first.ran, first.busy) == (2, 0, 0)
    long_run = run_folder(tmp_path / "out" / "runs", Store(tiny_store), expand(spec)[1].config)
    assert expand(spec)[1].config["train"]["steps"] == 300
    points = long_run.parent / "points" / long_run.name

    # SIGKILL the long point's job in the middle of its training (after its first checkpoint).
    wait_for(lambda: (long_run / "checkpoints" / "last.pt").exists(), "a first checkpoint")
    state = read_json(points / "state.json")
    os.kill(state["pid"], signal.SIGKILL)
    wait_for(lambda: [s.state for _, s in ablation_status(spec)] == ["done", "failed"], "the kill to show",
             every=0.5)  # a status reads the spec, store and records: not a busy loop beside the jobs
    _, killed = ablation_status(spec)[1]
    assert "stopped without reporting" in killed.detail and not killed.in_flight
    assert json.loads((long_run / "run.json").read_text())["status"] == "running"
    kept = records(results)
    assert len(kept) == 1  # the short point's
    killed_at = last_step(long_run)
    assert 10 <= killed_at < 300

    # The same command again submits the killed point alone; then Slurm's preemption signal (USR2) reaches
    # its job in the middle of training: the job requeues itself (submitit's Checkpointable).
    second = run_ablation(spec, executor=SUBMITIT_LOCAL, log=lambda line: None)
    assert (second.done_before, second.submitted) == (1, 1)
    token = read_json(points / "submission.json")["token"]
    new = wait_for(lambda: (s := read_json(points / "state.json")) and s.get("token") == token
                   and s["state"] == "running" and last_step(long_run) >= killed_at + 10 and s, "the resumed job")
    os.kill(new["pid"], signal.SIGUSR2)
    done = wait_for(lambda: (s := read_json(points / "state.json")) and s["state"] in ("done", "failed") and s,
                    "the requeued job", timeout=180, every=0.25)
    assert done["state"] == "done" and done["attempt"] == 2 and done["how"] == "resumed"
    stdout = Path(done["stdout"]).read_text()
    assert stdout.count("resuming") == 2 and "point requeued" in stdout

    third = run_ablation(spec, executor=SUBMITIT_LOCAL, log=lambda line: None)  # collects: nothing to run
    assert (third.done_before, third.submitted, len(third.records)) == (2, 0, 2)
    assert {p: records(results).get(p) for p in kept} == kept  # the short point's record, untouched
    assert len(records(results)) == 2 and not list(results.glob(".*"))  # one record a point, no torn file
    with open(long_run / "log.csv", newline="") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == list(range(1, 301))  # each step once, across three processes
    assert json.loads((long_run / "run.json").read_text())["steps"] == 300


def last_step(run: Path) -> int:
    """The last step log.csv holds (0 before it exists); a row being written is skipped."""
    try:
        with open(run / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return 0
    steps = [int(row["step"]) for row in rows if (row.get("step") or "").isdigit()]
    return max(steps, default=0)


def test_a_head_sweep_shares_one_job_and_one_run(tiny_store, tiny_train_overrides, tmp_path, capsys):
    # Three points that differ only in eval.head share one run folder: one job trains it once and evaluates
    # every head (a job a point would have two jobs meet the run folder's lock).
    spec = write_spec(tmp_path / "spec.toml", tiny_store, tiny_train_overrides,
                      '"eval.head" = ["nearest_prototype", "simpleshot", "logistic"]')
    argv = ["ablate", str(spec), "--executor", "submitit-local", "--cpus-per-job", "1", "--wait"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 3 point(s) as job(s)" in out and "(1 jobs: points of one run share its job)" in out
    assert "3 of 3 points finished" in out
    runs = list((tmp_path / "out" / "runs").glob("*/protonet-*"))
    assert len(runs) == 1
    kept = records(tmp_path / "out" / "results")
    assert sorted(load_record(p)["head"]["name"] for p in kept) == ["logistic", "nearest_prototype", "simpleshot"]
    state = read_json(runs[0].parent / "points" / runs[0].name / "state.json")
    assert state["state"] == "done" and [o["ok"] for o in state["outcomes"]] == [True, True, True]
    assert state["how"] == "trained" and [o["how"] for o in state["outcomes"]][1:] == ["reused", "reused"]
    assert main(["ablate", str(spec), "--status"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "ablation grid: 3 points: 3 done, 0 running, 0 failed, 0 pending"
