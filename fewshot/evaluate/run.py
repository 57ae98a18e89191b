"""Evaluate a trained run (or raw pixels) on fixed episode files: embed once, score all, one record a file."""
from __future__ import annotations

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


def evaluate_files(embed: Callable[[torch.Tensor], torch.Tensor], store: Store, episode_files: list[EpisodeFile],
                   method: str, device: torch.device, distance: str = "euclidean", config: dict | None = None,
                   run: str | None = None, precision: str = "fp32", channels_last: bool = False,
                   batch_episodes: int = 250, extra: dict | None = None, head=None,
                   train_split: str = "train") -> list[dict]:
    """One record per episode file. Rows used by all files of a split are embedded once, together.

    `head` (fewshot.heads; default nearest prototype with `distance`) scores the episodes; one that needs
    training-split statistics (SimpleShot's CL2N mean) gets the embeddings of the store's `train_split`,
    embedded once. `extra` is added to every record (evaluate_run names the checkpoint and its step)."""
    from fewshot.heads import create_head

    tune_allocator()
    if head is None:
        head = create_head("nearest_prototype", distance=distance, batch_episodes=batch_episodes)
    by_split: dict[str, list[EpisodeFile]] = {}
    for f in episode_files:
        if f.meta["split"] not in store.split_names:
            raise FewshotError(f"episode file {f.path} is for split {f.meta['split']!r}, which store {store.root} lacks")
        by_split.setdefault(f.meta["split"], []).append(f)
    if head.needs_train_split:
        if train_split not in store.split_names:
            raise FewshotError(f"head {head.name} (eval.head_norm={head.norm.kind}) needs the training split "
                               f"{train_split!r}, which store {store.root} lacks")
        train = store.split(train_split)
        head.fit_split(sharded.embed_rows(embed, train.images, np.arange(len(train)), device, precision=precision,
                                          channels_last=channels_last))
    records = []
    for split_name, files in by_split.items():
        split = store.split(split_name)
        started = time.perf_counter()
        resolved = [f.resolve(split) for f in files]
        rows = [batch.rows(split.class_offsets) for batch in resolved]
        needed = np.unique(np.concatenate([r.ravel() for pair in rows for r in pair]))
        # Under torchrun the ranks share embedding and scoring; each gets the single-process numbers.
        cache = sharded.embed_rows(embed, split.images, needed, device, precision=precision,
                                   channels_last=channels_last)
        embed_seconds = time.perf_counter() - started
        for f, (support, query) in zip(files, rows):
            t0 = time.perf_counter()
            acc = head.score(cache, np.searchsorted(needed, support), np.searchsorted(needed, query))
            seconds = embed_seconds / len(files) + time.perf_counter() - t0
            records.append(make_record(method, acc, f.meta, split.checksum, config, run, seconds,
                                       extra={"distance": distance, **(extra or {})}, head=head.describe()))
    return records


def evaluate_run(run: str | Path, episode_files: list[EpisodeFile], data: str | Path | None = None,
                 device_name: str = "auto", precision: str | None = None, checkpoint: str = "best",
                 method: str | None = None, eval_settings: dict | None = None) -> list[dict]:
    """`eval_settings`: `eval.*` head keys (head, head_C, ...) to score with instead of the run's own; the
    records' config then names them."""
    from fewshot.config import apply_overrides, head_overrides
    from fewshot.heads import head_from_config
    from fewshot.train.loop import load_run

    device = resolve_device(device_name)
    learner, config, summary = load_run(run, checkpoint, device)
    config.setdefault("eval", {})
    for key, value in _head_defaults().items():  # runs trained before heads existed
        config["eval"].setdefault(key, value)
    apply_overrides(config, head_overrides(eval_settings))
    data = data or summary.get("data")
    if not data:
        raise FewshotError(f"{run} does not say which store it was trained on; pass --data")
    t = config["train"]
    if t["channels_last"]:
        learner = learner.to(memory_format=torch.channels_last)
    return evaluate_files(learner.embed, Store(data), episode_files, method or config["name"], device,
                          config["eval"]["distance"], config, str(run), precision or t["precision"],
                          t["channels_last"], config["eval"]["batch_episodes"],
                          extra={"checkpoint": checkpoint, "checkpoint_step": summary.get("checkpoint_step")},
                          head=head_from_config(config["eval"]), train_split=t["split"])


def evaluate_pixels(data: str | Path, episode_files: list[EpisodeFile], device_name: str = "auto",
                    distance: str = "euclidean", eval_settings: dict | None = None) -> list[dict]:
    """The untrained floor: nearest class mean (or the head of `eval_settings`) over raw flattened pixels.

    The record's config is {"backbone": "pixels", "distance": ...}, with an `eval` section only where a
    head other than the default is named (so the floor's records keep their identity)."""
    from fewshot.config import DEFAULTS, apply_overrides, head_overrides
    from fewshot.heads import head_from_config

    settings = {"eval": {**DEFAULTS["eval"], "distance": distance}}
    apply_overrides(settings, head_overrides(eval_settings))
    config: dict = {"backbone": "pixels", "distance": distance}
    changed = {k: v for k, v in settings["eval"].items() if v != DEFAULTS["eval"][k] and k != "distance"}
    if changed:
        config["eval"] = changed
    return evaluate_files(pixel_embed, Store(data), episode_files, "pixels", resolve_device(device_name), distance,
                          config, head=head_from_config(settings["eval"]))


def _head_defaults() -> dict:
    from fewshot.config import DEFAULTS, HEAD_KEYS

    return {k: DEFAULTS["eval"][k] for k in HEAD_KEYS}
