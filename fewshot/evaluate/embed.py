"""Embed store rows once, in batches, with the model in eval mode (the ProtoNet convention)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from fewshot.data.store import MappedReader
from fewshot.device import autocast, to_float_images


def embed_batch(image_shape: tuple[int, ...], device: torch.device | str = "cpu") -> int:
    """Images a forward pass when embedding for evaluation.

    On CPU, about 50,000 pixels a batch (64 images at 28x28, 16 at 84x84 and above): measured with
    benchmarks/bench_embed.py on a Xeon (2 cores), a Conv-4 at 28x28 embedded 1.2x (two threads) to 1.4x
    (one thread) more images a second in batches of 32-64 than of 2,000, whose activations are far larger
    than the caches; at 84x84 (Conv-4 and ResNet-12) 8 to 500 a batch measured alike. On CPU the embeddings
    are the same bit for bit for any batch of two or more (see batch_bounds; tested), so this choice moves
    no result. On a GPU, large batches: about 1.5 million input values (2,000 at 28x28x1), at least 500
    (84x84x3).
    """
    if torch.device(device).type == "cpu":
        return max(16, min(2000, 50_176 // max(1, int(np.prod(image_shape[:2])))))
    return max(500, min(2000, 1_572_864 // max(1, int(np.prod(image_shape)))))


def embed_rows(embed: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, rows: np.ndarray,
               device: torch.device, batch_size: int | None = None, precision: str = "fp32",
               channels_last: bool = False) -> torch.Tensor:
    """Embeddings (len(rows), D) float32 on CPU of `images[rows]` (rows sorted for sequential memmap reads).

    `batch_size` None: `embed_batch` of the images' shape on `device`.

    The forward passes run under inference mode (no autograd bookkeeping at all); the result is an
    ordinary tensor (concatenated outside it), so callers may change it in place. The reader gives the
    memory map's pages back as it goes, so embedding a large split keeps RSS bounded.
    """
    chunks = []
    if batch_size is None:
        batch_size = embed_batch(images.shape[1:], device)
    # Rows are read and converted to float in blocks of many batches (one call each, not one a batch of 64:
    # the per-call cost was 8% of the time at 28x28), then embedded a batch at a time.
    bounds = batch_bounds(len(rows), batch_size)
    batches_a_read = max(1, (1 << 20) // (max(1, int(np.prod(images.shape[1:]))) * batch_size))
    reader = MappedReader(images)
    rows = np.asarray(rows, dtype=np.int64)
    with torch.inference_mode():
        for i in range(0, len(bounds), batches_a_read):
            batches = bounds[i:i + batches_a_read]
            first = batches[0][0]
            x = to_float_images(torch.from_numpy(reader.take(rows[first:batches[-1][1]])), device, channels_last)
            for start, stop in batches:
                with autocast(device, precision):
                    out = embed(x[start - first:stop - first])
                chunks.append(out.float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0)


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of `count` rows; a lone last row joins the batch before it.

    On CPU a batch of one image takes other kernels than a batch of two or more, whose results are the
    same bit for bit whatever their size (tests/evaluate/test_embed.py): so a row's embedding does not
    depend on the batch size or on where the split ends.
    """
    bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    if batch_size > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], count)]
    return bounds


def pixel_embed(images: torch.Tensor) -> torch.Tensor:
    """The untrained floor: raw flattened pixels."""
    return images.flatten(1)
