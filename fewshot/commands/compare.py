"""`fewshot compare A B`: paired difference of two records (or of the records of two folders) on the same episodes."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="paired difference of two result records (or folders) evaluated on the same episodes",
                       description="Per-episode accuracy A - B on the same episode file: mean difference, its 95% "
                                   "CI (normal, ddof 0, and Student-t, ddof 1), and two-sided p-values of the paired "
                                   "t-test (scipy.stats.ttest_rel) and the Wilcoxon signed-rank test "
                                   "(scipy.stats.wilcoxon, zero differences dropped). Both are 1 when every "
                                   "difference is zero. Records from different episode files are refused. A and B "
                                   "may be folders (searched with their subfolders): their records are paired by "
                                   "episode file, and by method and seed where a file has several, and each pair "
                                   "is compared.")
    p.add_argument("a", help="result record A (.json) or a folder of records")
    p.add_argument("b", help="result record B (.json) or a folder of records")
    p.add_argument("--decimals", type=int, default=2, help="digits after the point (default: 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from pathlib import Path

    from fewshot.evaluate.compare import compare_records, format_comparison, pair_records
    from fewshot.results.records import load_record, load_records
    if not Path(args.a).is_dir() and not Path(args.b).is_dir():
        print(format_comparison(compare_records(load_record(args.a), load_record(args.b)), args.decimals), end="")
        return 0
    pairs = pair_records(load_records([args.a]), load_records([args.b]), args.a, args.b)
    for index, (a, b) in enumerate(pairs):
        print(("\n" if index else "") + f"A {a['_path']}\nB {b['_path']}")
        print(format_comparison(compare_records(a, b), args.decimals), end="")
    return 0
