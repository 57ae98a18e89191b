"""Regenerate (or check) the fixed test episode files in this folder.

    .venv/bin/python episodes/make_episodes.py                      # write missing files
    .venv/bin/python episodes/make_episodes.py --check              # redraw in memory, compare checksums

Omniglot files are drawn from a prepared Vinyals store (`--omniglot-store DIR`, or prepared here from
`--omniglot-src`, default ../shared/data/omniglot). miniImageNet files are drawn from the class names and
image counts of the Ravi test CSV (`--splits`, default ../shared/data/splits), with no images needed;
tieredImageNet files from the class names of Ren's test CSV, ranks among each class's first 732 images.
Existing files are never overwritten unless `--force`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import fewshot
from fewshot.data.store import Store
from fewshot.episodes.files import EpisodeFile, load_episode_file, make_episode_file
from fewshot.episodes.protocols import (PROTOCOLS, TIERED_MIN_IMAGES, Protocol, class_counts_from_csv,
                                       class_names_from_ren_csv, make_episode_file_from_counts)
from fewshot.errors import FewshotError

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
GENERATED_BY = f"episodes/make_episodes.py (fewshot {fewshot.__version__})"


def omniglot_store(args: argparse.Namespace, scratch: Path) -> Store:
    if args.omniglot_store:
        return Store(args.omniglot_store)
    from fewshot.data.registry import get_format

    out = scratch / "omniglot"
    print(f"preparing Omniglot from {args.omniglot_src} into {out}")
    get_format("omniglot").prepare(args.omniglot_src, out, force=False, seed=0, download_missing=False,
                                   resize="bilinear", workers=2, progress=False)
    return Store(out)


def draw(protocol: Protocol, args: argparse.Namespace, scratch: Path, stores: dict) -> EpisodeFile:
    p = protocol
    if p.dataset == "omniglot":
        if "omniglot" not in stores:
            stores["omniglot"] = omniglot_store(args, scratch)
        split = stores["omniglot"].split(p.split)
        made = make_episode_file(split, p.ways, p.shots, p.queries, p.count, p.seed, GENERATED_BY)
        made.meta["generated_from"] = (f"prepared store, {split.manifest.get('source_variant')}, split {split.name} "
                                       f"(checksum {split.checksum})")
        return made
    if p.dataset == "miniimagenet":
        csv_path = Path(args.splits) / "miniimagenet" / p.split_variant / f"{p.split}.csv"
        names, counts = class_counts_from_csv(csv_path)
        return make_episode_file_from_counts(
            p.dataset, p.split, names, counts, p.ways, p.shots, p.queries, p.count, p.seed,
            generated_by=GENERATED_BY,
            generated_from=f"class names and image counts of splits/miniimagenet/{p.split_variant}/{p.split}.csv "
                           "(no images)")
    if p.dataset == "tieredimagenet":
        names = class_names_from_ren_csv(Path(args.splits) / "tieredimagenet" / f"{p.split}.csv")
        return make_episode_file_from_counts(
            p.dataset, p.split, names, [TIERED_MIN_IMAGES] * len(names), p.ways, p.shots, p.queries, p.count, p.seed,
            generated_by=GENERATED_BY, counts_at_least=True,
            generated_from=f"class names of splits/tieredimagenet/{p.split}.csv (Ren et al. 2018; no images), ranks "
                           f"among the first {TIERED_MIN_IMAGES} images of each class (every class has at least that many)")
    raise FewshotError(f"no recipe for dataset {p.dataset!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--omniglot-store", help="prepared Omniglot (Vinyals) store")
    parser.add_argument("--omniglot-src", default=str(SHARED / "omniglot"), help="Omniglot archives to prepare from")
    parser.add_argument("--splits", default=str(SHARED / "splits"), help="folder of split files (miniimagenet/ravi/...)")
    parser.add_argument("--out", default=str(HERE), help="folder for the episode files (default: this one)")
    parser.add_argument("--only", nargs="*", help="dataset names to do (default all)")
    parser.add_argument("--check", action="store_true", help="redraw and compare with the files; write nothing")
    parser.add_argument("--force", action="store_true", help="replace files whose episodes differ")
    args = parser.parse_args(argv)
    out = Path(args.out)
    stores: dict = {}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="fewshot-episodes-") as scratch:
        for protocol in PROTOCOLS:
            if args.only and protocol.dataset not in args.only:
                continue
            path = out / protocol.filename
            try:
                made = draw(protocol, args, Path(scratch), stores)
            except FewshotError as exc:
                print(f"{protocol.filename}: cannot draw ({exc})", file=sys.stderr)
                failures += 1
                continue
            existing = load_episode_file(path) if path.exists() else None
            if existing is not None and existing.checksum == made.checksum:
                print(f"{protocol.filename}: up to date ({made.checksum[:12]})")
            elif args.check:
                state = "missing" if existing is None else f"differs ({existing.checksum[:12]} != {made.checksum[:12]})"
                print(f"{protocol.filename}: {state}", file=sys.stderr)
                failures += 1
            elif existing is not None and not args.force:
                print(f"{protocol.filename}: differs from a fresh draw; keeping it (pass --force to replace)",
                      file=sys.stderr)
                failures += 1
            else:
                made.save(path)
                print(f"{protocol.filename}: wrote {protocol.count} episodes ({made.checksum[:12]})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
