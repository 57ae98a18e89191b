"""`fewshot table RESULT... --format md|csv|latex [--baseline METHOD] [--ci normal|t] [--per-seed]`."""
from __future__ import annotations

import argparse
import sys

from fewshot.errors import FewshotError
from fewshot.results.records import load_records


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="table result records: rows methods, columns settings, mean +- ci95",
                       description="Read result records (files or folders of them) and print a table: rows "
                                   "methods (the raw-pixel floor last), columns episode settings, cells mean +- "
                                   "95% CI. Bold: the best mean of each column and every method whose paired "
                                   "difference from it is not significant (paired t-test on the same episodes, "
                                   "p >= 0.05). Several seeds of one method (same method name, different seed): "
                                   "mean over seeds +- Student-t 95% CI over the seed means. A column mixing "
                                   "episode sets is refused. csv gives numbers: per column mean, ci95, bold (1/0).")
    p.add_argument("results", nargs="+", help="result .json files or folders (searched with their subfolders)")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex"],
                   help="md (with a caption line), csv (numeric columns), latex (booktabs table with caption)")
    p.add_argument("--decimals", type=int, default=2, help="digits after the point (default: 2)")
    p.add_argument("--ci", default="normal", choices=["normal", "t"],
                   help="interval over episodes: normal 1.96*std/sqrt(n), ddof 0 (default, the field's "
                        "convention) or Student-t, ddof 1")
    p.add_argument("--baseline", metavar="METHOD",
                   help="add a column per setting: paired difference from METHOD, mean +- 95%% CI, * p < 0.05")
    p.add_argument("--per-seed", action="store_true", help="one row per seed instead of the mean over seeds")
    p.add_argument("--by", choices=["ways", "shots"],
                   help="instead: accuracy broken down by each episode's ways or shots a class (Meta-Dataset "
                        "episodes vary in both), md or csv")
    p.add_argument("--plot", metavar="PNG", help="with --by ways: also draw accuracy against ways into PNG")
    p.add_argument("--lake", action="store_true",
                   help="instead: error rates on Lake's 20 one-shot runs beside the published figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.decimals < 0:
        raise FewshotError(f"--decimals must be 0 or more, got {args.decimals}")
    records = load_records(args.results)
    if args.plot and args.by != "ways":
        raise FewshotError("--plot draws accuracy against ways: give it with --by ways")
    if args.lake:
        from fewshot.evaluate.lake import format_lake_table

        text = format_lake_table(records, args.decimals)
    elif args.by:
        from fewshot.results.breakdown import breakdown_frame, format_breakdown

        text = format_breakdown(records, args.by, args.format, args.decimals)
        if args.plot:
            from fewshot.results.plots import plot_by_ways

            plot_by_ways(breakdown_frame(records, "ways"), args.plot)
    else:
        from fewshot.results.tables import format_table  # pandas: loaded by this verb only

        text = format_table(records, args.format, args.decimals, baseline=args.baseline, ci=args.ci,
                            per_seed=args.per_seed)
    # On stderr, so that the table on stdout can be redirected to a file as it is (and after the table, so
    # that a refusal stays one line).
    print(f"read {len(records)} result record{'s' if len(records) != 1 else ''} from "
          f"{', '.join(args.results)}", file=sys.stderr)
    print(text, end="")
    return 0
