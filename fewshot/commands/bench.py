"""`fewshot bench METHOD --data DIR [--ways 5] [--shots 1,5] [--seeds 0,1,2] [--episodes FILE...] [key=value ...]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewshot.bench import DEFAULT_COUNT, DEFAULT_QUERIES, bench, bench_status
from fewshot.commands.common import add_device, positive_int
from fewshot.commands.executor_options import add_executor_options, executor_options, format_statuses
from fewshot.config import list_configs


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 1,5") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


class _IntermixedParser(argparse.ArgumentParser):
    """Accepts key=value overrides after options too: `fewshot bench METHOD --data DIR optim.lr=0.01`.

    Plain argparse consumes positionals at their first run of arguments, so overrides placed after the
    options would be refused; intermixed parsing collects them wherever they are.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="train (or reuse) a method per seed, evaluate on fixed episodes, print the table",
                       description="For each seed: train METHOD on DIR's train split into RUNS/<store>/<name>-<config "
                                   "digest> (a finished run with the same resolved config is reused, a stopped one "
                                   "resumed), evaluate it on the episode files (default: fixed files drawn once, seed "
                                   "0, from DIR's test split for every --ways x --shots), and write one record per "
                                   "(run, episode file) to --results; records already there are not measured again. "
                                   "Prints the table (mean over seeds +- Student-t CI over seed means) at the end. "
                                   "key=value pairs override the config; name=NEW_NAME keeps variants apart.")
    p.add_argument("method", help=f"method config ({', '.join(list_configs())}) or a .toml file")
    p.add_argument("--data", required=True, help="prepared store to train and evaluate on")
    p.add_argument("--ways", type=int_list, default=[5], help="test ways, comma-separated (default 5)")
    p.add_argument("--shots", type=int_list, default=[1, 5], help="test shots, comma-separated (default 1,5)")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="training seeds (default 0,1,2)")
    p.add_argument("--episodes", nargs="+", metavar="FILE", help="episode files (instead of --ways/--shots)")
    p.add_argument("--queries", type=positive_int, default=DEFAULT_QUERIES, help="queries a class of default episodes")
    p.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, help="episodes per default episode file")
    # Not ./results: that folder holds the committed tables of real runs, with their provenance.
    p.add_argument("--results", default="work-runs/results",
                   help="results folder (default ./work-runs/results, which git ignores)")
    p.add_argument("--runs", default="work-runs", help="runs folder (default ./work-runs, which git ignores)")
    p.add_argument("--floor", action="store_true", help="also evaluate the raw-pixel floor on the same episodes")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex"], help="format of the final table")
    p.add_argument("--head", help="classifier head scoring the episodes (same as eval.head=NAME; the runs are "
                                  "shared by every head): nearest_prototype (default), simpleshot, logistic, finetune")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars: training prints a plain line every few log rows instead")
    p.add_argument("--status", action="store_true",
                   help="print each seed as done, running, failed (its error and log) or pending; run nothing")
    add_executor_options(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    add_device(p)
    p.set_defaults(func=run)
    p.__class__ = _IntermixedParser  # same parser, intermixed positionals (see the class)


def run(args: argparse.Namespace) -> int:
    if args.status:
        statuses = bench_status(args.method, args.data, args.ways, args.shots, args.seeds, args.episodes, args.results,
                                args.runs, args.overrides, args.precision, args.queries, args.count)
        print(format_statuses([(f"{config['name']} seed {config['seed']}", status) for config, status in statuses]),
              end="")
        return 0
    records = bench(args.method, args.data, args.ways, args.shots, args.seeds, args.episodes, args.results, args.runs,
                    args.overrides, args.device, args.precision, "lines" if args.no_progress else True, args.floor,
                    args.queries, args.count, executor=executor_options(args), head=args.head)
    if records:
        from fewshot.results.tables import format_table  # pandas: imported only when a table is printed

        print()
        print(format_table(records, args.format), end="")
        from fewshot.report import build_report  # here, not at the top: `fewshot --help` need not load it
        report = build_report(records, Path(args.results) / f"report-{Path(args.method).stem}", runs=[args.runs],
                              baseline="pixels" if args.floor else None, title=f"fewshot bench {args.method}")
        print(f"\nreport: {report}")
    return 0
