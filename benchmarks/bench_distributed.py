"""Speed-up of N training processes (torch.distributed, gloo on CPU) over one, on the synthetic store.

All sides train the same run: ProtoNet Conv-4, a global batch of `--episodes` episodes a step (each process
takes its share), the same seeded stream. Three ways to spend the cores: one process with every core as
intra-op threads (the default of `fewshot train`), one process with one thread (the baseline that shows
what the cores add), and N processes with cores / N threads each (what `fewshot train --nproc N` does).
Reported: training steps per second after the first steps (from each run's log), and wall time including
process start-up. Runs alternate so a busy machine hurts every side alike; the medians are printed.

    .venv/bin/python benchmarks/bench_distributed.py [--nproc 2] [--steps 40] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def steps_per_second(run: Path, skip: int) -> float:
    with open(run / "log.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["loss"]]
    first, last = rows[skip - 1], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["seconds"]) - float(first["seconds"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the rate (warm-up)")
    parser.add_argument("--episodes", type=int, default=2, help="train.episodes_per_step (the global batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64, help="Conv-4 width")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    from fewshot.data.synthetic import prepare_synthetic

    store = work / "store"
    prepare_synthetic(store, seed=0)
    overrides = [f"train.steps={args.steps}", "train.val_every=0", "train.log_every=1",
                 f"train.checkpoint_every={args.steps}", f"train.episodes_per_step={args.episodes}",
                 f"backbone.hidden={args.hidden}", "train.device=cpu"]
    cores = os.cpu_count() or 1
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    sides = {f"1 process x {cores} threads": (1, environment),
             "1 process x 1 thread": (1, {**environment, "OMP_NUM_THREADS": "1"}),
             f"{args.nproc} processes x {max(1, cores // args.nproc)} threads": (args.nproc, environment)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for index, (name, (nproc, env)) in enumerate(sides.items()):
            out = work / f"run-{index}-{repeat}"
            command = [sys.executable, "-m", "fewshot", "train", "--data", str(store), "--out", str(out),
                       "--device", "cpu", "--no-progress", "--nproc", str(nproc), *overrides]
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
            wall = time.perf_counter() - started
            results[name].append((steps_per_second(out, args.skip), wall))
            print(f"repeat {repeat}, {name}: {results[name][-1][0]:.3f} steps/s, {wall:.1f} s wall", flush=True)
    print(f"{cores} cores, global batch of {args.episodes} episodes (protonet config), Conv-4 hidden {args.hidden}, "
          f"{args.steps} steps; medians of {args.repeats}")
    medians = {name: (statistics.median(r for r, _ in runs), statistics.median(w for _, w in runs))
               for name, runs in results.items()}
    base_rate, base_wall = next(iter(medians.values()))
    for name, (rate, wall) in medians.items():
        print(f"{name:>26}: {rate:.3f} steps/s ({rate / base_rate:.2f}x), {wall:.1f} s wall "
              f"({base_wall / wall:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
