"""Opening a tieredImageNet-sized train split and sampling episodes from it: time and resident memory.

    .venv/bin/python benchmarks/bench_open_tiered.py [--episodes 1000] [--quick] [--json FILE]

The split has tieredImageNet's train size: 448,695 images of 84x84x3 uint8 (9.5 GB) in 351 classes of 732 to
1,300 images. It is written as a *sparse* file (numpy's open_memmap creates one): only the labels, the class
list and the first 1,000 images are real bytes, so it costs seconds and no disk space, whatever disk is free.
Reading a hole gives zero pages through the page cache like any file page, so resident memory behaves as it
would with real images (read speed does not: holes need no disk). The manifest is complete except the
images' hash, which is not computed (`fewshot verify` would report images.npy; opening does not hash it).

In a fresh process: open the store (Store(...).split("train")), then draw 5-way 5-shot 15-query episodes
and gather their images as the training loop does (BatchSource.gather), sampling the process's resident
memory from /proc: anonymous (the process's own) and file-backed (pages of the memory map, which the kernel
may drop at any time).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import Sampler, rss_mb  # noqa: E402
from common import CACHE, Report, add_common_args, header  # noqa: E402

TRAIN_IMAGES, TRAIN_CLASSES, SHAPE = 448_695, 351, (84, 84, 3)
SMALLEST, LARGEST = 732, 1300


def class_counts() -> np.ndarray:
    """351 counts between 732 and 1,300 that add up to 448,695 (tieredImageNet's train split)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(SMALLEST, LARGEST + 1, TRAIN_CLASSES)
    counts[0], counts[1] = SMALLEST, LARGEST
    while counts.sum() != TRAIN_IMAGES:  # nudge classes one image at a time, staying inside the range
        step = 1 if counts.sum() < TRAIN_IMAGES else -1
        movable = np.flatnonzero((counts + step >= SMALLEST) & (counts + step <= LARGEST))[2:]
        take = min(abs(int(counts.sum()) - TRAIN_IMAGES), len(movable))
        counts[rng.choice(movable, take, replace=False)] += step
    return counts


def sparse_store(out: Path) -> Path:
    """Write the sparse tieredImageNet-sized store (cached)."""
    from fewshot.data.store import STORE_FORMAT, STORE_VERSION, _split_checksum, sha256_file

    if (out / "store.json").exists():
        return out
    started = time.perf_counter()
    folder = out / "train"
    folder.mkdir(parents=True, exist_ok=True)
    counts = class_counts()
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(TRAIN_IMAGES, *SHAPE))
    images[:1000] = np.random.default_rng(0).integers(0, 256, (1000, *SHAPE), dtype=np.uint8)
    images.flush()
    del images
    labels = np.repeat(np.arange(TRAIN_CLASSES), counts).astype(np.int32)
    np.save(folder / "labels.npy", labels)
    names = [f"n{c:08d}" for c in range(TRAIN_CLASSES)]
    (folder / "classes.json").write_text(json.dumps({"names": names, "categories": None}))
    hashes = {"images.npy": "not-computed-sparse-benchmark-store", "labels.npy": sha256_file(folder / "labels.npy"),
              "classes.json": sha256_file(folder / "classes.json")}
    manifest = {"format": STORE_FORMAT, "format_version": STORE_VERSION, "dataset": "tieredimagenet-sized",
                "split": "train", "source_variant": "generated-sparse", "n_images": TRAIN_IMAGES,
                "n_classes": TRAIN_CLASSES, "image_shape": list(SHAPE), "class_counts_min": int(counts.min()),
                "class_counts_max": int(counts.max()), "sha256": hashes, "checksum": _split_checksum(hashes)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / "store.json").write_text(json.dumps({"format": STORE_FORMAT, "format_version": STORE_VERSION,
                                                "dataset": "tieredimagenet-sized", "source_variant": "generated-sparse",
                                                "splits": ["train"], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    size = (folder / "images.npy").stat()
    print(f"   wrote {out} in {time.perf_counter() - started:.1f} s: images.npy {size.st_size / 1e9:.2f} GB, "
          f"{size.st_blocks * 512 / 2**20:.0f} MiB on disk")
    return out


def child(store: str, episodes: int) -> None:
    """(Fresh process) open, then sample and gather episodes; print JSON figures."""
    from fewshot.data.store import Store

    before = rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    split = Store(store).split("train")
    open_wall, open_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after_open = rss_mb()

    import torch

    from fewshot.config import load_config
    from fewshot.episodes.source import BatchSource

    config = load_config("protonet", ["episodes.ways=5", "episodes.shots=5", "episodes.queries=15"])
    source = BatchSource("episode", split, config, 0)
    after_imports = rss_mb()
    import os

    with Sampler(os.getpid(), interval=0.1) as sampler:
        started = time.perf_counter()
        checksum = 0
        for _ in range(episodes):
            rows, _, _ = source.rows_and_labels()
            checksum += int(source.gather(rows)[:, 0, 0, 0].sum())
        seconds = time.perf_counter() - started
    end = rss_mb()
    print(json.dumps({"open_wall_s": open_wall, "open_cpu_s": open_cpu, "rss_before_mb": before["rss"],
                      "rss_after_open_mb": after_open["rss"], "anon_after_open_mb": after_open["anon"],
                      "rss_after_imports_mb": after_imports["rss"], "episodes": episodes, "sampling_s": seconds,
                      "peak_rss_mb": max(sampler.peak["main_rss"], end["rss"]),
                      "peak_anon_mb": max(sampler.peak["main_anon"], end["anon"]),
                      "peak_file_mb": max(sampler.peak["main_file"], end["file"]),
                      "images_touched_gb": episodes * 100 * int(np.prod(SHAPE)) / 1e9, "torch": torch.__version__}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=1000, help="episodes to sample after opening (default 1000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_common_args(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.episodes)
        return 0
    header("tieredImageNet-sized train split (448,695 x 84x84x3 uint8, 9.5 GB, sparse): open and sample")
    store = sparse_store(CACHE / "tiered-sized-sparse")
    episodes = 200 if args.quick else args.episodes
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(store), "--episodes",
                          str(episodes)], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"   open: {r['open_wall_s']:.3f} s wall, {r['open_cpu_s']:.3f} s CPU; "
          f"RSS {r['rss_before_mb']:.0f} -> {r['rss_after_open_mb']:.0f} MiB "
          f"(anonymous {r['anon_after_open_mb']:.0f} MiB)")
    print(f"   then {r['episodes']:,} episodes of 100 images sampled and gathered ({r['images_touched_gb']:.1f} GB of "
          f"image reads) in {r['sampling_s']:.1f} s wall; with torch and the loop imported RSS was "
          f"{r['rss_after_imports_mb']:.0f} MiB")
    print(f"   peak while sampling: RSS {r['peak_rss_mb']:.0f} MiB = anonymous {r['peak_anon_mb']:.0f} MiB "
          f"+ file-backed (memory-mapped image pages, reclaimable) {r['peak_file_mb']:.0f} MiB")
    report = Report("open_tiered")
    for key, value in r.items():
        report.figure(key, value)
    print()
    report.target("open the 9.5 GB split (wall)", r["open_wall_s"], 0.5, False, " s")
    report.target("RSS right after opening", r["rss_after_open_mb"], 2048, False, " MiB")
    report.target("peak anonymous RSS while sampling (the process's own memory)", r["peak_anon_mb"], 2048, False, " MiB")
    report.target("peak total RSS while sampling (incl. mapped image pages)", r["peak_rss_mb"], 2048, False, " MiB")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
