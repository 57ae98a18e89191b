"""`fewshot curve RUN... --out PNG`: learning curves of one or more runs."""
from __future__ import annotations

import argparse

from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("curve", help="plot training loss and validation accuracy of runs to a PNG",
                       description="Read each run folder's log.csv and draw training loss and validation "
                                   "accuracy (with its 95% CI band) against the training step.")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--labels", nargs="*", help="a label per run (default: folder names)")
    p.add_argument("--title", default="", help="title above the plot (default: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.labels and len(args.labels) != len(args.runs):
        raise FewshotError(f"--labels gives {len(args.labels)} labels for {len(args.runs)} runs")
    from fewshot.results.curves import plot_learning_curves  # pandas: loaded by this verb only

    print(f"wrote {plot_learning_curves(args.runs, args.out, args.labels, args.title)}")
    return 0
