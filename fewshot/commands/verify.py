"""`fewshot verify DIR`: re-hash a store against its manifest."""
from __future__ import annotations

import argparse

from fewshot.data.store import Store
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="re-hash a prepared store against its manifest",
                       description="Re-hash every array of every split; exit non-zero naming any file that differs.")
    p.add_argument("data", help="prepared store folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = Store(args.data)
    bad = {split: files for split, files in store.verify().items() if files}
    if bad:
        split, files = next(iter(bad.items()))
        raise FewshotError(f"{store.root / split / files[0]} does not match its manifest checksum; "
                           "the store is damaged: prepare it again")
    print(f"{store.root}: all {len(store.split_names)} splits match their manifests")
    return 0
