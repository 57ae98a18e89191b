"""`fewshot table RESULT... --format md|csv|latex`."""
from __future__ import annotations

import argparse

from fewshot.results.records import load_records
from fewshot.results.tables import format_table


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="table result records: rows methods, columns settings, mean +- ci95",
                       description="Read result records (files or folders of them) and print a table.")
    p.add_argument("results", nargs="+", help="result .json files or folders")
    p.add_argument("--format", default="md", choices=["md", "csv", "latex"])
    p.add_argument("--decimals", type=int, default=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(format_table(load_records(args.results), args.format, args.decimals), end="")
    return 0
