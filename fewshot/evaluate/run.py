"""Evaluate a trained run (or raw pixels) on fixed episode files: embed once, score all, one record a file."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fewshot.data.store import MappedReader, Store
from fewshot.device import resolve_device, tune_allocator
from fewshot.embeddings.file import EmbeddingFile, load_embedding_file
from fewshot.episodes.files import EpisodeFile
from fewshot.errors import FewshotError
from fewshot.evaluate import distributed as sharded
from fewshot.evaluate.embed import embed_batch, pixel_embed
from fewshot.evaluate.exact import score_episodes_exact
from fewshot.evaluate.pretrained import build_pretrained, store_channels
from fewshot.models.initial_weights import restoring_checkpoint
from fewshot.evaluate.episodes import score_ragged_episodes
from fewshot.evaluate.lake import lake_error_fields
from fewshot.results.records import make_record
from fewshot.runs import load_run

# Recorded in exact floor records: what made them independent of the machine.
EXACT_SCORING = "exact integer nearest class mean (ties to the lowest class index)"


def evaluate_files(embed: Callable[[torch.Tensor], torch.Tensor] | None, store: Store | EmbeddingFile,
                   episode_files: list[EpisodeFile],
                   method: str, device: torch.device, distance: str = "euclidean", config: dict | None = None,
                   run: str | None = None, precision: str = "fp32", channels_last: bool = False,
                   batch_episodes: int = 250, extra: dict | None = None, head=None,
                   train_split: str = "train") -> list[dict]:
    """One record per episode file. Rows used by all files of a split are embedded once, together.

    `head` (fewshot.evaluate.heads; default nearest prototype with `distance`) scores the episodes; one that needs
    training-split statistics (SimpleShot's CL2N mean) gets the embeddings of the store's `train_split`,
    embedded once. `extra` is added to every record (evaluate_run names the checkpoint and its step). With
    `embed` None, `store` is an embedding file (fewshot.embeddings) and its rows are the cache: nothing is
    embedded. Ragged (Meta-Dataset) files are scored by nearest prototype (score_ragged_episodes)."""
    from fewshot.evaluate.heads import create_head

    tune_allocator()
    if head is None:
        head = create_head("nearest_prototype", distance=distance, batch_episodes=batch_episodes)
    by_split = _files_by_split(store, episode_files)
    if any(f.ragged for f in episode_files) and head.name != "nearest_prototype":
        raise FewshotError(f"head {head.name} scores fixed-shape episodes; ragged (Meta-Dataset) episode files are "
                           "scored by nearest_prototype: drop --head for them")
    if head.needs_train_split:
        if train_split not in store.split_names:
            raise FewshotError(f"head {head.name} (eval.head_norm={head.norm.kind}) needs the training split "
                               f"{train_split!r}, which {getattr(store, 'root', None) or getattr(store, 'path', '')} "
                               "lacks (an embedding file holds one split: export the training split too, or "
                               "use eval.head_norm=L2N)")
        train = store.split(train_split)
        everything = np.arange(len(train))
        head.fit_split(train.embeddings_of(everything) if embed is None else
                       sharded.embed_rows(embed, train.images, everything, device, precision=precision,
                                          channels_last=channels_last))
    records = []
    for split_name, files in by_split.items():
        split = store.split(split_name)
        started = time.perf_counter()
        resolved = [f.resolve(split) for f in files]
        rows = [batch.rows(split.class_offsets) for batch in resolved]
        needed = np.unique(np.concatenate([r.ravel() for pair in rows for r in pair]))
        # Under torchrun the ranks share embedding and scoring; each gets the single-process numbers.
        cache = (split.embeddings_of(needed) if embed is None else
                 sharded.embed_rows(embed, split.images, needed, device, precision=precision,
                                    channels_last=channels_last))
        embed_seconds = time.perf_counter() - started
        for f, (support, query), batch in zip(files, rows, resolved):
            t0 = time.perf_counter()
            if f.ragged:
                # Every rank scores all ragged episodes (cheap next to embedding), so each has the whole result.
                acc = score_ragged_episodes(cache, np.searchsorted(needed, support), np.searchsorted(needed, query),
                                            batch.ways, batch.support_counts, batch.query_counts, distance)
            else:
                acc = head.score(cache, np.searchsorted(needed, support), np.searchsorted(needed, query))
            seconds = embed_seconds / len(files) + time.perf_counter() - t0
            records.append(make_record(method, acc, f.meta, split.checksum, config, run, seconds,
                                       extra={"distance": distance, **protocol_fields(f, acc), **(extra or {})},
                                       head=head.describe()))
    return records


def _files_by_split(store: Store, episode_files: list[EpisodeFile]) -> dict[str, list[EpisodeFile]]:
    by_split: dict[str, list[EpisodeFile]] = {}
    for f in episode_files:
        if f.meta["split"] not in store.split_names:
            raise FewshotError(f"episode file {f.path} is for split {f.meta['split']!r}, which store {store.root} lacks")
        by_split.setdefault(f.meta["split"], []).append(f)
    return by_split


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


# --layout of `fewshot eval`: the run's train.channels_last ("config"), or one given here.
EVAL_LAYOUTS = {"config": None, "auto": "auto", "channels_last": True, "nchw": False}


def evaluate_run(run: str | Path, episode_files: list[EpisodeFile], data: str | Path | None = None,
                 device_name: str = "auto", precision: str | None = None, checkpoint: str = "best",
                 method: str | None = None, eval_settings: dict | None = None, layout: str = "config") -> list[dict]:
    """Records of a trained run. `eval_settings`: `eval.*` head keys (head, head_C, ...) to score with instead
    of the run's own; the records' config then names them. `layout`: the images' memory layout while embedding
    (EVAL_LAYOUTS); "auto" (given here or as the run's train.channels_last) is the faster one on this machine
    (fewshot.layout)."""
    from fewshot.config import apply_overrides, head_overrides
    from fewshot.evaluate.heads import head_from_config
    from fewshot.layout import resolve_channels_last

    if layout not in EVAL_LAYOUTS:
        raise FewshotError(f"layout {layout!r} is not one of {', '.join(EVAL_LAYOUTS)}")
    device = resolve_device(device_name)
    with restoring_checkpoint():  # a timm backbone's starting weights: the checkpoint replaces them
        learner, config, summary = load_run(run, checkpoint, device)
    config.setdefault("eval", {})
    for key, value in _head_defaults().items():  # runs trained before heads existed
        config["eval"].setdefault(key, value)
    apply_overrides(config, head_overrides(eval_settings))
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
                                              embed_batch((height, width, channels), device),
                                              "eval", json.dumps(config["backbone"], sort_keys=True),
                                              forward=learner.embed)
    if channels_last:
        learner = learner.to(memory_format=torch.channels_last)
    return evaluate_files(learner.embed, store, episode_files, method or config["name"], device,
                          config["eval"]["distance"], config, str(run), precision or t["precision"],
                          bool(channels_last), config["eval"]["batch_episodes"],
                          extra={"checkpoint": checkpoint, "checkpoint_step": summary.get("checkpoint_step")},
                          head=head_from_config(config["eval"]), train_split=t["split"])


def evaluate_pixels(data: str | Path, episode_files: list[EpisodeFile], device_name: str = "auto",
                    distance: str = "euclidean", eval_settings: dict | None = None) -> list[dict]:
    """The untrained floor: nearest class mean (or the head of `eval_settings`) over raw flattened pixels.

    Euclidean nearest-prototype floors of fixed-shape episodes are scored exactly on the integer pixels
    (fewshot/evaluate/exact.py), on the CPU, so they are the same on every machine; cosine, other heads and
    ragged files go through the float path. The record's config is {"backbone": "pixels", "distance": ...},
    with an `eval` section only where a head other than the default is named (the floor keeps its identity)."""
    from fewshot.config import DEFAULTS
    from fewshot.evaluate.heads import head_from_config

    settings = _eval_settings(distance, eval_settings)
    config: dict = {"backbone": "pixels", "distance": distance}
    changed = {k: v for k, v in settings.items() if v != DEFAULTS["eval"][k] and k != "distance"}
    if changed:
        config["eval"] = changed
    device = resolve_device(device_name)
    store = Store(data)
    default_head = settings["head"] == DEFAULTS["eval"]["head"] and not changed
    exact = [f for f in episode_files if distance == "euclidean" and default_head and not f.ragged]
    floats = [f for f in episode_files if f not in exact]
    records = _evaluate_pixels_exactly(store, exact, config) if exact else []
    if floats:
        records += evaluate_files(pixel_embed, store, floats, "pixels", device, distance, config,
                                  head=head_from_config(settings))
    return records


def _eval_settings(distance: str, eval_settings: dict | None) -> dict:
    """The `eval` section a model without a run config is scored with: the defaults, `distance`, and the
    given `eval.*` head settings."""
    from fewshot.config import DEFAULTS, apply_overrides, head_overrides

    settings = {"eval": {**DEFAULTS["eval"], "distance": distance}}
    apply_overrides(settings, head_overrides(eval_settings))
    return settings["eval"]


def _head_for(distance: str, eval_settings: dict | None):
    """The head of `eval.*` settings (default: nearest prototype with `distance`)."""
    from fewshot.evaluate.heads import head_from_config

    return head_from_config(_eval_settings(distance, eval_settings))


def _head_defaults() -> dict:
    from fewshot.config import DEFAULTS, HEAD_KEYS

    return {k: DEFAULTS["eval"][k] for k in HEAD_KEYS}


def evaluate_pretrained(model: str, data: str | Path, episode_files: list[EpisodeFile], device_name: str = "auto",
                        weights: str = "", pretrained: bool = False, input_size: int = 0,
                        precision: str | None = None, method: str | None = None,
                        distance: str = "euclidean", eval_settings: dict | None = None) -> list[dict]:
    """A frozen timm model (backbone.name = "timm") on fixed episodes, with no training run."""
    device = resolve_device(device_name)
    store = Store(data)
    backbone, config = build_pretrained(model, store_channels(store, episode_files), weights, pretrained,
                                        input_size, device)
    return evaluate_files(backbone, store, episode_files, method or config["name"], device, distance, config,
                          precision=precision or "fp32", head=_head_for(distance, eval_settings))


def evaluate_embeddings(embeddings: str | Path | EmbeddingFile, episode_files: list[EpisodeFile],
                        device_name: str = "auto", method: str | None = None,
                        distance: str | None = None, eval_settings: dict | None = None) -> list[dict]:
    """Score episode files over an embedding file's rows (`fewshot embed`, or features from any tool).

    The scoring and the records are those of `fewshot eval`: an embedding file exported from a run gives the
    run's records, per-episode accuracies equal. The method, config, distance and checkpoint come from the
    file's source where it names them."""
    file = embeddings if isinstance(embeddings, EmbeddingFile) else load_embedding_file(embeddings)
    for f in episode_files:
        file.check_episodes(f.meta, f.path)
    source = file.meta.get("source") or {}
    source = source if isinstance(source, dict) else {"description": source}
    config = source.get("config") if isinstance(source.get("config"), dict) else source
    eval_config = config.get("eval") if isinstance(config.get("eval"), dict) else {}
    distance = distance or eval_config.get("distance") or config.get("distance") or "euclidean"
    extra = {k: source[k] for k in ("checkpoint", "checkpoint_step") if k in source}
    extra["embeddings"] = {"file": str(file.path) if file.path else None, "checksum": file.checksum}
    return evaluate_files(None, file, episode_files, method or source.get("method") or "embeddings",
                          resolve_device(device_name), distance, config, source.get("run"),
                          batch_episodes=eval_config.get("batch_episodes", 250), extra=extra,
                          head=_head_for(distance, eval_settings))


def _evaluate_pixels_exactly(store: Store, episode_files: list[EpisodeFile], config: dict) -> list[dict]:
    """One record a file; the rows all files of a split use are read once, as uint8."""
    records = []
    for split_name, files in _files_by_split(store, episode_files).items():
        split = store.split(split_name)
        started = time.perf_counter()
        rows = [f.resolve(split).rows(split.class_offsets) for f in files]
        needed = np.unique(np.concatenate([r.ravel() for pair in rows for r in pair]))
        pixels = MappedReader(split.images).take(needed).reshape(len(needed), -1)
        read_seconds = time.perf_counter() - started
        for f, (support, query) in zip(files, rows):
            t0 = time.perf_counter()
            acc = score_episodes_exact(pixels, np.searchsorted(needed, support), np.searchsorted(needed, query))
            seconds = read_seconds / len(files) + time.perf_counter() - t0
            records.append(make_record("pixels", acc, f.meta, split.checksum, config, None, seconds,
                                       extra={"distance": config["distance"], "scoring": EXACT_SCORING,
                                              **protocol_fields(f, acc)}))
    return records
