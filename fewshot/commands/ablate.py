"""`fewshot ablate SPEC [--jobs N] [--results DIR] [--executor slurm ...] [--status]`: run a grid of configs, then
table and plot it."""
from __future__ import annotations

import argparse

from fewshot.ablate import ablation_status, load_spec, run_ablation
from fewshot.commands.bench import _IntermixedParser
from fewshot.commands.common import non_negative_int, positive_int
from fewshot.commands.executor_options import add_executor_options, executor_options, format_statuses


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="train and evaluate every point of a config grid (SPEC .toml), table and plot it",
                       description="Run every point of the SPEC's grid (every combination of the listed config "
                                   "values, at every seed) on the same fixed episodes: points whose records exist "
                                   "are skipped and stopped runs resume, so it can be stopped and restarted at any "
                                   "time. Then writes OUT/table.md, OUT/table.csv and OUT/ablation.png (accuracy "
                                   "+- 95% CI against each swept key). SPEC format: fewshot/ablate.py and "
                                   "ablations/*.toml.")
    p.add_argument("spec", help="ablation spec (.toml), e.g. ablations/shots.toml")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="local worker processes (each gets max(1, cores // jobs) torch threads; default 1)")
    p.add_argument("--results", help="results folder (default OUT/results)")
    p.add_argument("--data", help="prepared store (default: the spec's data)")
    p.add_argument("--out", help="output folder (default: the spec's out)")
    p.add_argument("--max-points", type=non_negative_int, help="run at most this many unfinished points, then report")
    p.add_argument("--force", action="store_true",
                   help="replace a table.md, table.csv or ablation.png under OUT that fewshot did not write")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: the spec's, else auto)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="mixed precision autocast on GPU for every point (default: the config's)")
    p.add_argument("--no-progress", action="store_true",
                   help="no training progress (with --jobs 1, each run otherwise shows a bar on a terminal, "
                        "plain lines in a file; with more jobs the workers are always quiet)")
    p.add_argument("--status", action="store_true",
                   help="print every point as done, running, failed (its error and log) or pending; run nothing")
    add_executor_options(p, " The spec's [executor] table sets the same; these options override it.")
    p.add_argument("--head", help="classifier head for every point (same as the override eval.head=NAME); "
                                  "sweep heads with a grid key \"eval.head\" = [...]")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for every point, over the spec's (e.g. train.steps=50 for a smoke run)")
    p.set_defaults(func=run)
    p.__class__ = _IntermixedParser  # key=value may follow the options


def run(args: argparse.Namespace) -> int:
    overrides = (list(args.overrides) + ([f"train.precision={args.precision}"] if args.precision else [])
                 + ([f"eval.head={args.head}"] if args.head else []))
    spec = load_spec(args.spec, args.data, args.out, overrides)
    if args.status:
        return print_status(spec, args.results)
    options = executor_options(args, spec.executor, args.jobs)
    outcome = run_ablation(spec, options.jobs, args.results, args.max_points, args.device, executor=options,
                           progress=not args.no_progress and options.jobs == 1, force=args.force)
    finished = outcome.done_before + outcome.ran
    print(f"{finished} of {len(outcome.points)} points finished"
          + (f", {outcome.submitted} submitted" if outcome.submitted else "")
          + (f", {outcome.busy} still held by live jobs" if outcome.busy else "")
          + (f", {outcome.pending} not run yet (--max-points)" if outcome.pending else "")
          + (f", {len(outcome.failed)} failed" if outcome.failed else ""))
    if outcome.submitted or outcome.busy:
        print(f"watch them with `fewshot ablate {args.spec} --status`; run this command again to collect the table "
              "(and to resubmit any point that failed)")
    if outcome.table:
        from fewshot.report import build_report
        report = build_report(outcome.records, spec.out / "report", runs=[spec.out / "runs"],
                              title=f"ablation {spec.name}")
        print(f"table: {outcome.table}\nplot:  {outcome.plot}\nreport: {report}\n")
        print(outcome.table.read_text(), end="")
    return 1 if outcome.failed else 0


def print_status(spec, results: str | None) -> int:
    statuses = ablation_status(spec, results)
    counts = {state: sum(s.state == state for _, s in statuses) for state in ("done", "running", "failed", "pending")}
    print(f"ablation {spec.name}: {len(statuses)} points: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    print(format_statuses([(f"{point.label} seed {point.seed}", status) for point, status in statuses]), end="")
    return 0
