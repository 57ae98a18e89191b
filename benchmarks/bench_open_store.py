"""Open a miniImageNet-sized prepared split and draw 1,000 episodes from it: seconds and memory.

    .venv/bin/python benchmarks/bench_open_store.py [--cache DIR]

The store (train split only: 64 classes x 600 images of 84x84x3 uint8 = 38,400 images, 813 MB = 775 MiB) is written
once with StoreWriter and cached (default: $TMPDIR/fewshot-bench-mini-store). Each measurement runs in a
fresh interpreter, so nothing is already imported or mapped: `Store(dir).split("train")` (memory-mapped
open), then 1,000 5-way 5-shot 15-query episodes sampled and their 100 images each gathered from the
memory map. The file is usually in the page cache (it was just written or read); the open does not read
the images at all, so its time does not depend on that.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _memory import maxrss_self_mb, rss_mb  # noqa: E402

N_CLASSES, PER_CLASS, SHAPE = 64, 600, (84, 84, 3)


def build(folder: Path) -> None:
    from fewshot.data.store import StoreWriter

    if (folder / "store.json").exists():
        print(f"using cached store {folder}")
        return
    started = time.perf_counter()
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    rng = np.random.default_rng(0)
    with StoreWriter(folder, "miniimagenet", "benchmark-random", force=True) as writer:
        sink = writer.split_sink("train", labels, [f"n{c:08d}" for c in range(N_CLASSES)], SHAPE)
        for start in range(0, len(labels), 1200):
            sink.put(np.arange(start, start + 1200), rng.integers(0, 256, (1200, *SHAPE), dtype=np.uint8))
        writer.finish_split("train", sink)
    print(f"wrote {len(labels)} images to {folder} in {time.perf_counter() - started:.1f} s")


def child(folder: Path) -> None:
    """Runs in a fresh interpreter; prints one JSON line."""
    from fewshot.data.store import Store
    from fewshot.episodes.sampler import EpisodeSampler

    result = {"rss_after_imports": rss_mb()}
    started = time.perf_counter()
    split = Store(folder).split("train")
    result["open_s"] = time.perf_counter() - started
    result["rss_after_open"] = rss_mb()
    started = time.perf_counter()
    batch = EpisodeSampler(split.class_counts, 5, 5, 15, seed=0).sample(1000)
    support, query = batch.rows(split.class_offsets)
    result["sample_s"] = time.perf_counter() - started
    started = time.perf_counter()
    checksum = 0
    for s, q in zip(support, query):  # one episode at a time, as a training loop reads them
        images = split.images[np.concatenate([s.ravel(), q.ravel()])]
        checksum += int(images[:, 0, 0, 0].sum())
    result["gather_s"] = time.perf_counter() - started
    result["rss_after_episodes"] = rss_mb()
    result["maxrss"] = maxrss_self_mb()
    result["checksum"] = checksum
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fewshot-bench-mini-store")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.cache)
    build(args.cache)
    out = subprocess.run([sys.executable, __file__, "--cache", str(args.cache), "--child"], capture_output=True,
                         text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    mb = lambda d: f"RSS {d['rss']:.0f} MiB (anonymous {d['anon']:.0f}, file-backed {d['file']:.0f})"  # noqa: E731
    size = (args.cache / "train" / "images.npy").stat().st_size / 2**20
    print(f"store: 38,400 x 84x84x3 uint8 ({size:.0f} MiB images.npy)")
    print(f"fresh process after imports: {mb(r['rss_after_imports'])}")
    print(f"Store(dir).split('train'): {r['open_s'] * 1000:.1f} ms; then {mb(r['rss_after_open'])}")
    print(f"1,000 episodes 5-way 5-shot 15-query: sampled in {r['sample_s'] * 1000:.1f} ms, their 100,000 images "
          f"gathered from the memory map in {r['gather_s']:.2f} s ({100_000 / r['gather_s']:.0f} images/s)")
    print(f"after the episodes: {mb(r['rss_after_episodes'])}; peak RSS {r['maxrss']:.0f} MiB "
          "(file-backed pages are the page cache mapped in, shared and droppable)")


if __name__ == "__main__":
    main()
