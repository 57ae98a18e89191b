"""Speed-up of N training processes (torch.distributed, gloo on CPU) over one, on the synthetic store.

Both sides train the same run: ProtoNet Conv-4, a global batch of `--episodes` episodes a step (each process
takes its share), the same seeded stream. One process uses every core as intra-op threads; N processes
get cores / N threads each (what `fewshot train --nproc N` does). Reported: training steps per second
after the first steps (from each run's log), and wall time including process start-up. Runs alternate
(1, N, 1, N, ...) so a busy machine hurts both sides alike; the medians are printed.

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
    results: dict[int, list[tuple[float, float]]] = {1: [], args.nproc: []}
    for repeat in range(args.repeats):
        for nproc in (1, args.nproc):
            out = work / f"run-{nproc}-{repeat}"
            command = [sys.executable, "-m", "fewshot", "train", "--data", str(store), "--out", str(out),
                       "--device", "cpu", "--no-progress", "--nproc", str(nproc), *overrides]
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
            wall = time.perf_counter() - started
            results[nproc].append((steps_per_second(out, args.skip), wall))
            print(f"repeat {repeat} nproc {nproc}: {results[nproc][-1][0]:.2f} steps/s, {wall:.1f} s wall",
                  flush=True)
    one_rate = statistics.median(r for r, _ in results[1])
    n_rate = statistics.median(r for r, _ in results[args.nproc])
    one_wall = statistics.median(w for _, w in results[1])
    n_wall = statistics.median(w for _, w in results[args.nproc])
    print(f"cores {os.cpu_count()}, global batch {args.episodes} episodes of the protonet config, "
          f"Conv-4 hidden {args.hidden}, {args.steps} steps")
    print(f"1 process:  {one_rate:.2f} steps/s, {one_wall:.1f} s wall (median of {args.repeats})")
    print(f"{args.nproc} processes: {n_rate:.2f} steps/s, {n_wall:.1f} s wall")
    print(f"speed-up: {n_rate / one_rate:.2f}x in steps/s, {one_wall / n_wall:.2f}x in wall time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
