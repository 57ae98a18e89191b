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
from fewshot.evaluate.episodes import score_ragged_episodes
from fewshot.evaluate.lake import lake_error_fields
from fewshot.results.records import make_record


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
        cache = sharded.embed_rows(embed, split.images, needed, device, precision=precision,
                                   channels_last=channels_last)
        embed_seconds = time.perf_counter() - started
        for f, (support, query), batch in zip(files, rows, resolved):
            t0 = time.perf_counter()
            if f.ragged:
                # Every rank scores all ragged episodes (cheap next to embedding), so each has the whole result.
                acc = score_ragged_episodes(cache, np.searchsorted(needed, support), np.searchsorted(needed, query),
                                            batch.ways, batch.support_counts, batch.query_counts, distance)
            else:
                acc = sharded.score_episodes(cache, np.searchsorted(needed, support), np.searchsorted(needed, query),
                                             distance, batch_episodes)
            seconds = embed_seconds / len(files) + time.perf_counter() - t0
            records.append(make_record(method, acc, f.meta, split.checksum, config, run, seconds,
                                       extra={"distance": distance, **protocol_fields(f, acc), **(extra or {})}))
    return records


def protocol_fields(episode_file: EpisodeFile, accuracies: np.ndarray) -> dict:
    """Record fields of a non-default protocol: its name, each ragged episode's ways and shots, Lake's error."""
    protocol = episode_file.meta.get("protocol")
    if protocol is None:
        return {}  # uniform fixed episodes: records as they always were
    fields: dict = {"protocol": protocol}
    if episode_file.ragged:
        batch = episode_file.batch
        fields["hierarchy"] = episode_file.meta.get("hierarchy")
        fields["per_episode_ways"] = batch.ways.astype(int).tolist()
        fields["per_episode_shots"] = [round(float(x), 3) for x in batch.mean_shots()]
        fields["per_episode_queries"] = (batch.query_sizes() // batch.ways).astype(int).tolist()
    if protocol == "lake-runs":
        fields.update(lake_error_fields(accuracies))
    return fields


def evaluate_run(run: str | Path, episode_files: list[EpisodeFile], data: str | Path | None = None,
                 device_name: str = "auto", precision: str | None = None, checkpoint: str = "best",
                 method: str | None = None) -> list[dict]:
    from fewshot.train.loop import load_run

    device = resolve_device(device_name)
    learner, config, summary = load_run(run, checkpoint, device)
    data = data or summary.get("data")
    if not data:
        raise FewshotError(f"{run} does not say which store it was trained on; pass --data")
    t = config["train"]
    if t["channels_last"]:
        learner = learner.to(memory_format=torch.channels_last)
    return evaluate_files(learner.embed, Store(data), episode_files, method or config["name"], device,
                          config["eval"]["distance"], config, str(run), precision or t["precision"],
                          t["channels_last"], config["eval"]["batch_episodes"],
                          extra={"checkpoint": checkpoint, "checkpoint_step": summary.get("checkpoint_step")})


def evaluate_pixels(data: str | Path, episode_files: list[EpisodeFile], device_name: str = "auto",
                    distance: str = "euclidean") -> list[dict]:
    """The untrained floor: nearest class mean over raw flattened pixels."""
    return evaluate_files(pixel_embed, Store(data), episode_files, "pixels", resolve_device(device_name), distance,
                          {"backbone": "pixels", "distance": distance})
