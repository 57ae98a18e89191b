"""`fewshot info DIR`: what a prepared store holds."""
from __future__ import annotations

import argparse

import numpy as np

from fewshot.data.store import Store


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print a store's splits, classes, counts, shape, source and checksums",
                       description="Describe a prepared store without re-hashing it (see `fewshot verify`).")
    p.add_argument("data", help="prepared store folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = Store(args.data)
    print(f"store {store.root}: dataset {store.dataset}, source {store.meta['source_variant']}, "
          f"created {store.meta.get('created', '?')}")
    for name in store.split_names:
        split = store.split(name)
        m = split.manifest
        categories = f", {len(set(split.categories))} categories" if split.categories else ""
        print(f"  {name}: {m['n_images']} images, {m['n_classes']} classes{categories}, "
              f"{m['class_counts_min']}-{m['class_counts_max']} a class, shape {tuple(m['image_shape'])}, "
              f"checksum {m['checksum'][:16]} (run `fewshot verify` to re-hash)")
        print(f"    {_hierarchy_line(split)}")
    return 0


def _hierarchy_line(split, shown: int = 3) -> str:
    """One line on the split's class hierarchy: parents, classes a parent, the first few parents."""
    hierarchy = split.hierarchy()
    if hierarchy is None:
        return "hierarchy: none (no class names a parent)"
    names, index = hierarchy
    sizes = np.bincount(index, minlength=len(names))
    listed = ", ".join(f"{n} ({s})" for n, s in zip(names[:shown], sizes[:shown]))
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return (f"hierarchy: {len(names)} parents, {sizes.min()}-{sizes.max()} classes each: {listed}{more}")
