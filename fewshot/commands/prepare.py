"""`fewshot prepare DATASET --src PATH --out DIR`."""
from __future__ import annotations

import argparse
import time

from fewshot.commands.common import non_negative_int, positive_int
from fewshot.data.registry import get_format, list_formats
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="convert a dataset once into a prepared, checksummed store",
                       description="Convert a public dataset (variant detected from what --src holds) into the "
                                   "prepared store: uint8 images that open memory-mapped, labels, sorted class "
                                   "names and a checksummed manifest. Written atomically.")
    p.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    p.add_argument("--src", help="folder holding the downloaded files")
    p.add_argument("--out", help="output folder for the prepared store")
    p.add_argument("--force", action="store_true", help="replace a store already at --out")
    p.add_argument("--download", action="store_true", help="fetch missing archives where the internet is reachable")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic set")
    p.add_argument("--resize", default="bilinear", choices=["bilinear", "bicubic", "lanczos", "nearest", "area"],
                   help="filter for images not already at the dataset's size (miniImageNet/tieredImageNet: 84x84)")
    p.add_argument("--workers", type=positive_int, default=2, help="processes that decode images (1: no pool)")
    p.add_argument("--parent-level", action="store_true",
                   help="imagefolder: one more folder level, <split>/<parent>/<class>/<image>; the parent is kept "
                        "as the class hierarchy")
    p.add_argument("--lake-split", action="store_true",
                   help="omniglot: Lake's split, background (4 rotations a character) and evaluation (upright) "
                        "alphabets, instead of Vinyals' train/val/test")
    p.add_argument("--list", action="store_true", help="list every supported dataset, variant and the files each expects")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for fmt in list_formats():
            print(f"{fmt.name}: {fmt.description}")
            for variant, files in fmt.variants.items():
                print(f"    {variant}: {files}")
        return 0
    if not args.dataset or not args.out:
        raise FewshotError("prepare needs DATASET and --out (and --src for real data); see `fewshot prepare --list`")
    fmt = get_format(args.dataset)
    if fmt.needs_src and not args.src:
        raise FewshotError(f"prepare {fmt.name} needs --src, the folder holding the downloaded files")
    if args.parent_level and fmt.name != "imagefolder":
        raise FewshotError(f"--parent-level is for imagefolder; {fmt.name} names its classes' parents itself")
    if args.lake_split and fmt.name != "omniglot":
        raise FewshotError(f"--lake-split is for omniglot, not {fmt.name}")
    started = time.perf_counter()
    splits = fmt.prepare(args.src, args.out, force=args.force, seed=args.seed, download_missing=args.download,
                         resize=args.resize, workers=args.workers, progress=not args.no_progress,
                         **({"parent_level": True} if args.parent_level else {}),
                         **({"lake_split": True} if args.lake_split else {}))
    for name, manifest in splits.items():
        print(f"{name}: {manifest['n_images']} images, {manifest['n_classes']} classes, "
              f"shape {tuple(manifest['image_shape'])}, checksum {manifest['checksum'][:12]}")
    print(f"prepared {fmt.name} into {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
