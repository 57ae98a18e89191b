"""`fewshot episodes`: write a fixed episode file (uniform, within-parent, Meta-Dataset or Lake's runs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewshot.commands.common import non_negative_int, positive_int
from fewshot.data.store import Store
from fewshot.episodes.protocols import SAMPLING_PROTOCOLS, make_protocol_file
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("episodes", help="draw a fixed set of episodes (N-way K-shot, within-parent, Meta-Dataset, "
                                        "Lake's runs) into a file",
                       description="Draw episodes from a prepared split with a seeded generator and save them; the "
                                   "file records the store's checksum and names images by class and rank.")
    p.add_argument("--data", required=True, help="prepared store folder")
    p.add_argument("--split", help="split to draw from (default test; runs for --protocol lake-runs)")
    p.add_argument("--protocol", default="fixed", choices=SAMPLING_PROTOCOLS,
                   help="fixed: uniform N-way K-shot Q-query (default); within-parent: the same with all classes "
                        "of an episode under one parent (e.g. one Omniglot alphabet); meta-dataset: Meta-Dataset's "
                        "variable-way variable-shot episodes (a ragged file; --ways/--shots/--queries unused); "
                        "lake-runs: Lake's 20 official one-shot runs from a store made by "
                        "`fewshot prepare omniglot-runs`")
    p.add_argument("--hierarchy", default="auto", choices=["auto", "none", "bilevel", "dag"],
                   help="meta-dataset: class choice through the store's parents; auto = Meta-Dataset's own "
                        "(bilevel for Omniglot, dag for ImageNet-like data, else none)")
    p.add_argument("--ways", type=positive_int, default=5, help="N, classes an episode")
    p.add_argument("--shots", type=positive_int, default=1, help="K, support images a class")
    p.add_argument("--queries", type=positive_int, default=15, help="Q, query images a class")
    p.add_argument("--count", type=positive_int, default=1000, help="number of episodes")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the episode generator (numpy PCG64)")
    p.add_argument("--out", required=True, help="episode file to write (.npz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing episode file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FewshotError(f"{out} already exists; choose another --out or pass --force")
    split_name = args.split or ("runs" if args.protocol == "lake-runs" else "test")
    split = Store(args.data).split(split_name)
    if args.protocol == "fixed":
        command = (f"fewshot episodes --split {split_name} --ways {args.ways} --shots {args.shots} "
                   f"--queries {args.queries} --count {args.count} --seed {args.seed}")
    elif args.protocol == "within-parent":
        command = (f"fewshot episodes --protocol within-parent --split {split_name} --ways {args.ways} --shots "
                   f"{args.shots} --queries {args.queries} --count {args.count} --seed {args.seed}")
    elif args.protocol == "meta-dataset":
        command = (f"fewshot episodes --protocol meta-dataset --hierarchy {args.hierarchy} --split {split_name} "
                   f"--count {args.count} --seed {args.seed}")
    else:
        command = f"fewshot episodes --protocol lake-runs --split {split_name}"
    episode_file = make_protocol_file(split, args.protocol, args.count, args.seed, args.ways, args.shots,
                                      args.queries, args.hierarchy, command)
    episode_file.save(out)
    if episode_file.ragged:
        b = episode_file.batch
        shape = (f"{episode_file.setting} episodes ({b.ways.min()}-{b.ways.max()} ways, mean {b.ways.mean():.1f}; "
                 f"{b.support_counts.min()}-{b.support_counts.max()} shots a class; "
                 f"{b.query_counts.min()}-{b.query_counts.max()} queries a class)")
    else:
        shape = f"{episode_file.setting} episodes ({episode_file.meta['queries']} queries)"
    print(f"wrote {len(episode_file)} {shape} of {split.dataset}/{split.name} to {out} "
          f"(checksum {episode_file.checksum[:12]})")
    return 0
