"""Embed store rows once, in batches, with the model in eval mode (the ProtoNet convention)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from fewshot.data.store import MappedReader
from fewshot.device import autocast, to_float_images


def embed_rows(embed: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, rows: np.ndarray,
               device: torch.device, batch_size: int = 500, precision: str = "fp32",
               channels_last: bool = False) -> torch.Tensor:
    """Embeddings (len(rows), D) float32 on CPU of `images[rows]` (rows sorted for sequential memmap reads).

    The forward passes run under inference mode (no autograd bookkeeping at all); the result is an
    ordinary tensor (concatenated outside it), so callers may change it in place. The reader gives the
    memory map's pages back as it goes, so embedding a large split keeps RSS bounded.
    """
    chunks = []
    reader = MappedReader(images)
    rows = np.asarray(rows, dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            block = torch.from_numpy(reader.take(rows[start:start + batch_size]))
            x = to_float_images(block, device, channels_last)
            with autocast(device, precision):
                out = embed(x)
            chunks.append(out.float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def pixel_embed(images: torch.Tensor) -> torch.Tensor:
    """The untrained floor: raw flattened pixels."""
    return images.flatten(1)
