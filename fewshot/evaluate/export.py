"""Export a split's embeddings (from a run, a pretrained timm model or raw pixels) to an embedding file.

Rows are embedded exactly as `fewshot eval` embeds them (fewshot.evaluate.embed.embed_rows: eval mode, the
same batches, precision and memory format), every image of the split, in store order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fewshot.data.store import Store
from fewshot.device import resolve_device, tune_allocator
from fewshot.embeddings.file import EmbeddingFile, build_embedding_file
from fewshot.errors import FewshotError
from fewshot.evaluate.embed import embed_rows, pixel_embed
from fewshot.evaluate.pretrained import build_pretrained
from fewshot.models.initial_weights import restoring_checkpoint
from fewshot.provenance import environment, git_commit, now


def export_embeddings(embed: Callable[[torch.Tensor], torch.Tensor], store: Store, split_name: str,
                      device: torch.device, source: dict, precision: str = "fp32",
                      channels_last: bool = False) -> EmbeddingFile:
    """Every image of `split_name` embedded, rows named by (class, rank); `source` describes the embedding."""
    tune_allocator()
    split = store.split(split_name)
    rows = np.arange(len(split), dtype=np.int64)
    embeddings = embed_rows(embed, split.images, rows, device, precision=precision, channels_last=channels_last)
    labels = split.labels.astype(np.int64)
    ranks = rows - split.class_offsets[labels]
    return build_embedding_file(embeddings.numpy(), labels, ranks, split.dataset, split.name, split.class_names,
                                split.class_counts, split.checksum, source,
                                source_variant=split.manifest.get("source_variant"), precision=precision,
                                commit=git_commit(), environment=environment(), created=now())


def export_run(run: str | Path, split: str, data: str | Path | None = None, device_name: str = "auto",
               precision: str | None = None, checkpoint: str = "best") -> EmbeddingFile:
    """A trained run's embeddings; the source keeps its config, so `eval --embeddings` records match `eval --run`."""
    from fewshot.runs import load_run

    device = resolve_device(device_name)
    with restoring_checkpoint():
        learner, config, summary = load_run(run, checkpoint, device)
    data = data or summary.get("data")
    if not data:
        raise FewshotError(f"{run} does not say which store it was trained on; pass --data")
    t = config["train"]
    if t["channels_last"]:
        learner = learner.to(memory_format=torch.channels_last)
    precision = precision or t["precision"]
    source = {"kind": "run", "method": config["name"], "run": str(run), "checkpoint": checkpoint,
              "checkpoint_step": summary.get("checkpoint_step"), "config": config}
    return export_embeddings(learner.embed, Store(data), split, device, source, precision, t["channels_last"])


def export_pretrained(model: str, data: str | Path, split: str, device_name: str = "auto", weights: str = "",
                      pretrained: bool = False, input_size: int = 0,
                      precision: str | None = None) -> EmbeddingFile:
    """A frozen timm model's embeddings; the source names the model, its weights (sha256) and input settings."""
    device = resolve_device(device_name)
    store = Store(data)
    channels = int(store.split(split).image_shape[-1])
    backbone, config = build_pretrained(model, channels, weights, pretrained, input_size, device)
    source = {"kind": "timm", "method": config["name"], "config": config}
    return export_embeddings(backbone, store, split, device, source, precision or "fp32")


def export_pixels(data: str | Path, split: str, device_name: str = "auto") -> EmbeddingFile:
    """Raw flattened pixels in [0, 1]: the untrained floor's embedding (what `eval --backbone pixels` scores)."""
    source = {"kind": "pixels", "method": "pixels", "config": {"backbone": "pixels", "distance": "euclidean"}}
    return export_embeddings(pixel_embed, Store(data), split, resolve_device(device_name), source)
