"""`fewshot info DIR`: what a prepared store holds."""
from __future__ import annotations

import argparse

from fewshot.data.store import Store


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a store's splits, classes, counts, shape, source and checksums",
                       description="Describe a prepared store without re-hashing it (see `fewshot verify`).")
    p.add_argument("data", help="prepared store folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = Store(args.data)
    print(f"store {store.root}: dataset {store.dataset}, source {store.meta.get('source_variant', '?')}, "
          f"created {store.meta.get('created', '?')}")
    for name in store.split_names:
        split = store.split(name)
        m = split.manifest
        categories = f", {len(set(split.categories))} categories" if split.categories else ""
        print(f"  {name}: {m['n_images']} images, {m['n_classes']} classes{categories}, "
              f"{int(split.class_counts.min())}-{int(split.class_counts.max())} a class, shape {tuple(m['image_shape'])}, "
              f"checksum {m['checksum'][:16]} (run `fewshot verify` to re-hash)")
    return 0
