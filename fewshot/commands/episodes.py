"""`fewshot episodes`: write a fixed episode file."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewshot.commands.common import non_negative_int, positive_int
from fewshot.data.store import Store
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("episodes", help="draw a fixed set of N-way K-shot Q-query episodes into a file",
                       description="Draw episodes from a prepared split with a seeded generator and save them; the "
                                   "file records the store's checksum and names images by class and rank.")
    p.add_argument("--data", required=True, help="prepared store folder")
    p.add_argument("--split", default="test", help="split to draw from (default test)")
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
    split = Store(args.data).split(args.split)
    command = (f"fewshot episodes --split {args.split} --ways {args.ways} --shots {args.shots} "
               f"--queries {args.queries} --count {args.count} --seed {args.seed}")
    episode_file = make_episode_file(split, args.ways, args.shots, args.queries, args.count, args.seed, command)
    episode_file.save(out)
    print(f"wrote {args.count} {episode_file.setting} episodes ({args.queries} queries) of {split.dataset}/"
          f"{split.name} to {out} (checksum {episode_file.checksum[:12]})")
    return 0
