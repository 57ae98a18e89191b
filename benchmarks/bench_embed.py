"""Embedding throughput: fewshot's embed_rows (read from the store, convert, forward) against the bare forward pass.

    .venv/bin/python benchmarks/bench_embed.py [--quick] [--json FILE]

For a Conv-4 ProtoNet (eval mode) at Omniglot's 28x28x1 and miniImageNet's 84x84x3 (generated stores):
- the bare forward pass: the backbone on a float batch already in memory, in inference mode, in each
  layout (NCHW, channels_last); the faster is "the best layout";
- fewshot.layout's "auto" choice, timed from an empty cache (what the first `fewshot eval` of a run with
  train.channels_last="auto" or `--layout auto` does once per machine), and whether it picked the best;
- embed_rows as `fewshot eval` runs it: rows read from the memory-mapped store, uint8 -> float, the
  chosen layout, forward, concatenated; at several batch sizes.
Timed in wall time with torch's threads and in CPU time of the process, interleaved rounds (common.py).
Target: embed_rows' images/s within 1.1x of the bare forward at its best layout, same batch size (CPU time:
the development machine is shared, so its wall time mostly measures waiting for a core; wall beside it).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Report, add_common_args, generated_store, header, interleaved, mini_store, print_table,  # noqa: E402
                    warm_pages)

import torch  # noqa: E402

SETTINGS = {  # name: (store, split, images a round)
    "omniglot 28x28x1": (lambda: generated_store("omniglot-like", {"test": (1000, 20)}, (28, 28, 1)), "test", 4000),
    "miniImageNet 84x84x3": (mini_store, "test", 500),
}


def measure(name: str, rounds: int, min_seconds: float) -> dict:
    from fewshot.config import load_config
    from fewshot.data.store import Store
    from fewshot.evaluate.embed import embed_rows
    from fewshot.evaluate.embed import embed_batch
    from fewshot.layout import resolve_channels_last
    from fewshot.learners import create_learner

    make_store, split_name, count = SETTINGS[name]
    split = Store(make_store()).split(split_name)
    warm_pages(split.images)
    height, width, channels = split.image_shape
    batch = embed_batch(split.image_shape, "cpu")  # what fewshot eval uses
    torch.manual_seed(0)
    learner = create_learner(load_config("protonet"), channels, (height, width), 64).eval()
    cpu = torch.device("cpu")
    rows = np.sort(np.random.default_rng(0).choice(len(split.images), count, replace=False))

    # The layout fewshot picks from an empty cache, and what deciding costs.
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["FEWSHOT_LAYOUT_CACHE"] = str(Path(scratch) / "layout.json")
        started = time.perf_counter()
        auto = resolve_channels_last("auto", learner, (channels, height, width), cpu, batch, "eval",
                                     "conv4", forward=learner.embed)
        decide_s = time.perf_counter() - started
        cached_started = time.perf_counter()
        resolve_channels_last("auto", learner, (channels, height, width), cpu, batch, "eval", "conv4",
                              forward=learner.embed)
        cached_s = time.perf_counter() - cached_started
        del os.environ["FEWSHOT_LAYOUT_CACHE"]

    x = torch.from_numpy(np.asarray(split.images[rows])).permute(0, 3, 1, 2).float().div_(255)
    inputs = {"nchw": x.contiguous(), "channels_last": x.contiguous(memory_format=torch.channels_last)}
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}

    def bare(layout: str, size: int):
        def run():
            learner.to(memory_format=formats[layout])
            with torch.inference_mode():
                for start in range(0, count, size):
                    learner.embed(inputs[layout][start:start + size])
        return run

    def embed(size: int, channels_last: bool, precision: str = "fp32"):
        def run():
            learner.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            return embed_rows(learner.embed, split.images, rows, cpu, size, precision, channels_last)
        return run

    chosen = "channels_last" if auto else "NCHW"
    methods = {f"bare forward, NCHW, batch {batch}": bare("nchw", batch),
               f"bare forward, channels_last, batch {batch}": bare("channels_last", batch),
               f"embed_rows, batch {batch}, auto ({chosen})": embed(batch, auto),
               f"embed_rows, batch {batch}, the other layout": embed(batch, not auto)}
    old = max(500, min(2000, 1_572_864 // int(np.prod(split.image_shape))))  # the batch until 2026-12-02
    if batch != old:
        methods[f"embed_rows, batch {old} (until 2026-12-02), auto ({chosen})"] = embed(old, auto)
    methods[f"embed_rows, batch {batch}, auto ({chosen}), bf16 autocast (--precision bf16)"] = embed(batch, auto, "bf16")
    wall = interleaved(methods, rounds=rounds, min_seconds=min_seconds, clock="wall")
    cpu_time = interleaved(methods, rounds=max(2, rounds - 1), min_seconds=min_seconds, clock="process")
    per_image = {k: v / count for k, v in wall.items()}
    per_image_cpu = {k: v / count for k, v in cpu_time.items()}
    bare_keys = [k for k in methods if k.startswith("bare")]
    best_key = min(bare_keys, key=per_image.get)
    best_bare, best_bare_cpu = per_image[best_key], min(per_image_cpu[k] for k in bare_keys)
    best_layout = "NCHW" if "NCHW" in best_key else "channels_last"
    fewshot_key = f"embed_rows, batch {batch}, auto ({chosen})"
    print(f"\n   {name}: {count:,} images a round; auto chose {chosen} in {decide_s:.2f} s (cached: "
          f"{cached_s * 1000:.1f} ms); the bare forward's best: {best_key}; fewshot eval embeds {batch} a batch")
    print_table([[k, f"{1 / per_image[k]:,.0f}", f"{1 / per_image_cpu[k]:,.0f}", f"{per_image[k] / best_bare:.3f}"]
                 for k in methods], ["", "images/s (wall)", "images/s (CPU s)", "time / best bare forward"])
    return {"ratio": per_image[fewshot_key] / best_bare, "ratio_cpu": per_image_cpu[fewshot_key] / best_bare_cpu,
            "auto_is_best": chosen == best_layout, "decide_s": decide_s, "best_bare": best_key,
            "images_per_s": {k: 1 / v for k, v in per_image.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    args = parser.parse_args()
    from fewshot.device import tune_allocator

    tune_allocator()  # as `fewshot eval` does
    header(f"Embedding throughput: embed_rows against the bare forward pass (Conv-4, eval, "
           f"{torch.get_num_threads()} threads)")
    report = Report("embed")
    rounds, min_seconds = (2, 0.5) if args.quick else (3, 1.5)
    for name in SETTINGS:
        figures = measure(name, rounds, min_seconds)
        report.figure(name, figures)
        print(f"   embed_rows takes {figures['ratio']:.3f}x the bare forward's time a image at its best layout "
              f"(wall; {figures['ratio_cpu']:.3f}x in CPU time); auto picked the best: {figures['auto_is_best']}")
        # CPU time of the process (both threads): on the shared machine wall time mostly measures waiting.
        report.target(f"{name}: embed_rows time / bare forward at the best layout (CPU time)", figures["ratio_cpu"],
                      1.1, False, "x")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
