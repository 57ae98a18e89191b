"""`fewshot ablate SPEC [--jobs N] [--results DIR]`: run a grid of configs, then table and plot it."""
from __future__ import annotations

import argparse

from fewshot.ablate import load_spec, run_ablation
from fewshot.commands.bench import _IntermixedParser
from fewshot.commands.common import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="train and evaluate every point of a config grid (SPEC .toml), table and plot it",
                       description="Run every point of the SPEC's grid (every combination of the listed config "
                                   "values, at every seed) on the same fixed episodes: points whose records exist "
                                   "are skipped and stopped runs resume, so it can be stopped and restarted at any "
                                   "time. Then writes OUT/table.md, OUT/table.csv and OUT/ablation.png (accuracy "
                                   "+- 95% CI against each swept key). SPEC format: fewshot/ablate.py and "
                                   "ablations/*.toml.")
    p.add_argument("spec", help="ablation spec (.toml), e.g. ablations/shots.toml")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes (each gets max(1, cores // jobs) torch threads)")
    p.add_argument("--results", help="results folder (default OUT/results)")
    p.add_argument("--data", help="prepared store (default: the spec's data)")
    p.add_argument("--out", help="output folder (default: the spec's out)")
    p.add_argument("--max-points", type=int, help="run at most this many unfinished points, then report")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the spec's, else auto)")
    p.add_argument("--head", help="classifier head for every point (same as the override eval.head=NAME); "
                                  "sweep heads with a grid key \"eval.head\" = [...]")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for every point, over the spec's (e.g. train.steps=50 for a smoke run)")
    p.set_defaults(func=run)
    p.__class__ = _IntermixedParser  # key=value may follow the options


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"eval.head={args.head}"] if args.head else [])
    spec = load_spec(args.spec, args.data, args.out, overrides)
    outcome = run_ablation(spec, args.jobs, args.results, args.max_points, args.device)
    finished = outcome.done_before + outcome.ran
    print(f"{finished} of {len(outcome.points)} points finished"
          + (f", {outcome.pending} not run yet (--max-points)" if outcome.pending else "")
          + (f", {len(outcome.failed)} failed" if outcome.failed else ""))
    if outcome.table:
        print(f"table: {outcome.table}\nplot:  {outcome.plot}\n")
        print(outcome.table.read_text(), end="")
    return 1 if outcome.failed else 0
