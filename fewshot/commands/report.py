"""`fewshot report RESULTS... [--runs RUNS...] [--baseline METHOD] --out DIR`: one static HTML page."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a static HTML report (table, distributions, paired differences, "
                                      "ablations, learning curves, provenance)",
                       description="Read result records (files or folders of them; an ablation's OUT folder works "
                                   "too) and write DIR/index.html with its images in DIR/img and the resolved "
                                   "configs in DIR/configs: readable offline, no server or JavaScript needed. It "
                                   "shows the results table (the cells, bold and ties of `fewshot table`), the "
                                   "per-episode accuracy distributions, paired differences from --baseline (the "
                                   "numbers of `fewshot compare`) as a forest plot, each ablation's table and plot, "
                                   "the learning curves of the runs behind the records, accuracy by ways and shots "
                                   "where episodes vary, and where every number came from.")
    p.add_argument("results", nargs="+", help="result .json files or folders")
    p.add_argument("--out", required=True, help="report folder to write (new, or one holding an earlier report)")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUNS",
                   help="run folders, or folders holding them, to find the runs behind the records where the "
                        "path a record names is not here")
    p.add_argument("--baseline", metavar="METHOD", help="paired differences of every method from METHOD")
    p.add_argument("--ci", default="normal", choices=["normal", "t"],
                   help="interval over episodes: normal 1.96*std/sqrt(n), ddof 0 (default) or Student-t, ddof 1")
    p.add_argument("--decimals", type=int, default=2, help="decimals of the numbers in the tables")
    p.add_argument("--title", default="", help="page title (default: fewshot report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `fewshot --help` need not load matplotlib or jinja2.
    from fewshot.errors import FewshotError
    from fewshot.report import report_from_paths

    if args.decimals < 0:
        raise FewshotError(f"--decimals must be 0 or more, got {args.decimals}")
    path = report_from_paths(args.results, args.out, args.runs, args.baseline, args.ci, args.decimals, args.title)
    print(f"report: {path}")
    return 0
