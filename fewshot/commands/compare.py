"""`fewshot compare A.json B.json`: paired difference of two records on the same episodes."""
from __future__ import annotations

import argparse



def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="paired difference of two result records evaluated on the same episodes",
                       description="Per-episode accuracy A - B on the same episode file: mean difference, its 95% "
                                   "CI (normal, ddof 0, and Student-t, ddof 1), and two-sided p-values of the paired "
                                   "t-test (scipy.stats.ttest_rel) and the Wilcoxon signed-rank test "
                                   "(scipy.stats.wilcoxon, zero differences dropped). Both are 1 when every "
                                   "difference is zero. Records from different episode files are refused.")
    p.add_argument("a", help="result record A (.json)")
    p.add_argument("b", help="result record B (.json)")
    p.add_argument("--decimals", type=int, default=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.evaluate.compare import compare_records, format_comparison
    from fewshot.results.records import load_record
    print(format_comparison(compare_records(load_record(args.a), load_record(args.b)), args.decimals), end="")
    return 0
