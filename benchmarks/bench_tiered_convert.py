"""Convert a tieredImageNet-format source of >= 50,000 PNGs and report images/s and peak memory.

    .venv/bin/python benchmarks/bench_tiered_convert.py [--images 50000] [--workers 2] [--cache DIR]

The source (Ren's layout: {split}_images_png.pkl lists of PNG-encoded uint8 arrays + {split}_labels.pkl)
is generated once and cached (default: $TMPDIR/fewshot-bench-tiered-<N>) as Python-2 pickles; images
are smooth random colour fields plus mild noise, about 12 KB a PNG (flat colour would compress to almost
nothing and pure noise not at all; small photographs sit in between). The conversion runs as
`fewshot prepare tieredimagenet` in a fresh process whose memory, and that of its decode workers, is
sampled from /proc while it runs; the RSS of the bare CLI process (which imports torch) is printed too.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _memory import Sampler, maxrss_children_mb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data" / "formats"))
from fixtures import py2_pickle_dumps  # noqa: E402

SPLIT_SHARE = {"train": 0.8, "val": 0.1, "test": 0.1}
PER_CLASS = 500


def _png_chunk(task: tuple[int, int]) -> list[np.ndarray]:
    """PNG bytes of images start..stop: a bicubic-upsampled 6x6 colour field plus mild noise."""
    start, stop = task
    out = []
    for index in range(start, stop):
        rng = np.random.default_rng(index)
        field = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((84, 84), Image.BICUBIC)
        pixels = np.clip(np.asarray(field, dtype=np.int16) + rng.normal(0, 3, (84, 84, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy())
    return out


def generate(folder: Path, total: int, workers: int) -> None:
    if (folder / "done").exists():
        print(f"using cached source {folder}")
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    offset, class_offset = 0, 0
    for split, share in SPLIT_SHARE.items():
        n = max(PER_CLASS * 2, int(round(total * share / PER_CLASS)) * PER_CLASS)
        n_classes = n // PER_CLASS
        with ProcessPoolExecutor(workers) as pool:
            chunks = pool.map(_png_chunk, [(s, min(s + 500, offset + n)) for s in range(offset, offset + n, 500)])
            pngs = [png for chunk in chunks for png in chunk]
        specific = np.repeat(np.arange(n_classes), PER_CLASS)
        rng = np.random.default_rng(class_offset)
        order = rng.permutation(n)  # classes interleaved, as in a real file
        labels = {
            "label_specific": specific[order],
            "label_general": specific[order] // 10,
            "label_specific_str": [f"n{class_offset + c:08d}" for c in range(n_classes)],
            "label_general_str": [f"n9{g:07d}" for g in range((n_classes + 9) // 10)],
        }
        # Written as Python 2's cPickle wrote Ren's files (byte strings, numpy 1.x arrays), so the reader
        # takes its real path: plain load fails on the first PNG, latin1 load succeeds.
        (folder / f"{split}_images_png.pkl").write_bytes(py2_pickle_dumps([pngs[i] for i in order]))
        (folder / f"{split}_labels.pkl").write_bytes(py2_pickle_dumps(labels))
        offset += n
        class_offset += n_classes
        print(f"generated {split}: {n} PNGs, {n_classes} classes, "
              f"{(folder / f'{split}_images_png.pkl').stat().st_size / 2**20:.0f} MiB pickle")
    (folder / "done").write_text("ok")
    print(f"generation took {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=62_500, help="total images (train gets 80%%)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    cache = args.cache or Path(tempfile.gettempdir()) / f"fewshot-bench-tiered-{args.images}"
    generate(cache, args.images, args.workers)
    out = Path(tempfile.mkdtemp(prefix="fewshot-bench-tiered-store-"))
    command = [sys.executable, "-m", "fewshot.cli", "prepare", "tieredimagenet", "--src", str(cache),
               "--out", str(out / "store"), "--workers", str(args.workers), "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with Sampler(process.pid) as sampler:
        output, _ = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"conversion failed:\n{output}")
    total = sum(int(line.split(":")[1].split()[0]) for line in output.splitlines()
                if line.split(":")[0] in SPLIT_SHARE)
    largest_pickle = max((cache / f"{s}_images_png.pkl").stat().st_size for s in SPLIT_SHARE) / 2**20
    peak = sampler.peak
    print(output.strip())
    print(f"converted {total} PNG images in {seconds:.1f} s with {args.workers} decode workers on "
          f"{os.cpu_count()} CPUs: {total / seconds:.0f} images/s (process start and torch import included)")
    print(f"largest images pickle: {largest_pickle:.0f} MiB; train split store: "
          f"{(out / 'store' / 'train' / 'images.npy').stat().st_size / 2**20:.0f} MiB")
    print(f"peak RSS, main process: {peak['main_rss']:.0f} MiB (anonymous {peak['main_anon']:.0f} MiB, "
          f"file-backed {peak['main_file']:.0f} MiB: mapped store pages the kernel may drop)")
    print(f"peak memory, main + decode workers + forkserver: PSS {peak['tree_pss']:.0f} MiB (anonymous "
          f"{peak['tree_pss_anon']:.0f} MiB, file-backed {peak['tree_pss_file']:.0f} MiB); sum of RSS "
          f"{peak['tree_rss']:.0f} MiB; getrusage max RSS of one child {maxrss_children_mb():.0f} MiB "
          "(generation workers included when the source was generated in this run)")
    baseline = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'benchmarks'); "
                               "from fewshot.cli import build_parser; build_parser(); from _memory import rss_mb; "
                               "print(rss_mb())"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"baseline of the CLI process before any work (imports torch): {baseline} MiB")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
