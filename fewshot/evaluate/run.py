"""Evaluate a trained run (or raw pixels) on fixed episode files: embed once, score all, one record a file."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fewshot.data.store import Store
from fewshot.device import resolve_device, tune_allocator
from fewshot.episodes.files import EpisodeFile
from fewshot.errors import FewshotError
from fewshot.evaluate import distributed as sharded
from fewshot.evaluate.embed import pixel_embed
from fewshot.results.records import make_record



def embed_batch(image_shape: tuple[int, ...]) -> int:
    """Images embedded a batch: about 1.5 million input values (2,000 at 28x28x1), at least 500 (84x84x3).

    benchmarks/bench_embed.py, Conv-4 on 2 cores: at 28x28x1, 2,000 a batch embedded 1.3x more images a
    CPU-second than 500; at 84x84x3, 250-1,000 measured the same. The first layer's output of a batch of
    2,000 at 28x28 is 400 MB, which is what the larger batch costs in peak memory.
    """
    return max(500, min(2000, 1_572_864 // max(1, int(np.prod(image_shape)))))


def evaluate_files(embed: Callable[[torch.Tensor], torch.Tensor], store: Store, episode_files: list[EpisodeFile],
                   method: str, device: torch.device, distance: str = "euclidean", config: dict | None = None,
                   run: str | None = None, precision: str = "fp32", channels_last: bool = False,
                   batch_episodes: int = 250, extra: dict | None = None) -> list[dict]:
    """One record per episode file. Rows used by all files of a split are embedded once, together.

    `extra` is added to every record (evaluate_run names the checkpoint and its step)."""
    tune_allocator()
    by_split: dict[str, list[EpisodeFile]] = {}
    for f in episode_files:
        if f.meta["split"] not in store.split_names:
            raise FewshotError(f"episode file {f.path} is for split {f.meta['split']!r}, which store {store.root} lacks")
        by_split.setdefault(f.meta["split"], []).append(f)
    records = []
    for split_name, files in by_split.items():
        split = store.split(split_name)
        started = time.perf_counter()
        resolved = [f.resolve(split) for f in files]
        rows = [batch.rows(split.class_offsets) for batch in resolved]
        needed = np.unique(np.concatenate([r.ravel() for pair in rows for r in pair]))
        # Under torchrun the ranks share embedding and scoring; each gets the single-process numbers.
        cache = sharded.embed_rows(embed, split.images, needed, device, embed_batch(split.image_shape),
                                   precision=precision, channels_last=channels_last)
        embed_seconds = time.perf_counter() - started
        for f, (support, query) in zip(files, rows):
            t0 = time.perf_counter()
            acc = sharded.score_episodes(cache, np.searchsorted(needed, support), np.searchsorted(needed, query),
                                         distance, batch_episodes)
            seconds = embed_seconds / len(files) + time.perf_counter() - t0
            records.append(make_record(method, acc, f.meta, split.checksum, config, run, seconds,
                                       extra={"distance": distance, **(extra or {})}))
    return records


# --layout of `fewshot eval`: the run's train.channels_last ("config"), or one given here.
EVAL_LAYOUTS = {"config": None, "auto": "auto", "channels_last": True, "nchw": False}


def evaluate_run(run: str | Path, episode_files: list[EpisodeFile], data: str | Path | None = None,
                 device_name: str = "auto", precision: str | None = None, checkpoint: str = "best",
                 method: str | None = None, layout: str = "config") -> list[dict]:
    """Records of a trained run. `layout`: the images' memory layout while embedding (EVAL_LAYOUTS); "auto"
    (given here or as the run's train.channels_last) is the faster one on this machine (fewshot.layout)."""
    from fewshot.layout import resolve_channels_last
    from fewshot.train.loop import load_run

    if layout not in EVAL_LAYOUTS:
        raise FewshotError(f"layout {layout!r} is not one of {', '.join(EVAL_LAYOUTS)}")
    device = resolve_device(device_name)
    learner, config, summary = load_run(run, checkpoint, device)
    data = data or summary.get("data")
    if not data:
        raise FewshotError(f"{run} does not say which store it was trained on; pass --data")
    t = config["train"]
    store = Store(data)
    setting = t["channels_last"] if EVAL_LAYOUTS[layout] is None else EVAL_LAYOUTS[layout]
    channels_last = setting
    if setting == "auto":
        splits = [f.meta["split"] for f in episode_files if f.meta["split"] in store.split_names]
        height, width, channels = store.split(splits[0] if splits else store.split_names[0]).image_shape
        channels_last = resolve_channels_last("auto", learner, (channels, height, width), device,
                                              embed_batch((height, width, channels)),
                                              "eval", json.dumps(config["backbone"], sort_keys=True),
                                              forward=learner.embed)
    if channels_last:
        learner = learner.to(memory_format=torch.channels_last)
    return evaluate_files(learner.embed, store, episode_files, method or config["name"], device,
                          config["eval"]["distance"], config, str(run), precision or t["precision"],
                          bool(channels_last), config["eval"]["batch_episodes"],
                          extra={"checkpoint": checkpoint, "checkpoint_step": summary.get("checkpoint_step")})


def evaluate_pixels(data: str | Path, episode_files: list[EpisodeFile], device_name: str = "auto",
                    distance: str = "euclidean") -> list[dict]:
    """The untrained floor: nearest class mean over raw flattened pixels."""
    return evaluate_files(pixel_embed, Store(data), episode_files, "pixels", resolve_device(device_name), distance,
                          {"backbone": "pixels", "distance": distance})
