"""Decode image files or encoded bytes to uint8 RGB arrays at a fixed size, in parallel and in bounded memory.

Readers hand `decode_stream` an iterable of sources (a path, or the encoded bytes of a PNG/JPEG as
`bytes` or a 1-D uint8 array); it yields `(start, images)` chunks in source order. With `workers > 1`
chunks are decoded by a process pool with at most `2 * workers` chunks in flight, so a reader never holds
more than a few chunks of decoded pixels however large the split. Images already at the target size are
not resampled; others are resized directly to it (no crop, as Ravi & Larochelle's miniImageNet script
does) with the named filter.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from io import BytesIO
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from fewshot.errors import FewshotError

#: `fewshot prepare --resize` names -> PIL filters. "area" is PIL's BOX: each output pixel is the mean of the
#: input pixels it covers, what OpenCV calls INTER_AREA for downscaling.
FILTERS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}
DEFAULT_FILTER = "bilinear"
CHUNK = 256

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


def resample_filter(name: str) -> Image.Resampling:
    try:
        return FILTERS[name]
    except KeyError:
        raise FewshotError(f"unknown resize filter {name!r}; choose one of: {', '.join(FILTERS)}") from None


def _describe(source: Source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"{len(memoryview(source).cast('B'))}-byte image"


def open_image(source: Source, what: str | None = None) -> Image.Image:
    """Open a path or encoded bytes with PIL and load it; a one-line FewshotError naming `what` otherwise."""
    name = what or _describe(source)
    try:
        if isinstance(source, (str, os.PathLike)):
            image = Image.open(source)
        else:
            image = Image.open(BytesIO(np.asarray(source, dtype=np.uint8).tobytes()
                                       if isinstance(source, np.ndarray) else bytes(source)))
        image.load()
    except FileNotFoundError:
        raise FewshotError(f"{name}: image file is not there") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FewshotError(f"{name}: not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           "the file is truncated or corrupt") from None
    return image


def to_array(image: Image.Image, size: tuple[int, int] | None, resize: str = DEFAULT_FILTER,
             channels: int = 3) -> np.ndarray:
    """PIL image -> uint8 (H, W, channels); `size` is (height, width), None keeps the image's size."""
    mode = "RGB" if channels == 3 else "L"
    if image.mode != mode:
        image = image.convert(mode)
    if size is not None and (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), resample=resample_filter(resize))
    array = np.asarray(image, dtype=np.uint8)
    return array if channels == 3 else array[..., None]


def decode_image(source: Source, size: tuple[int, int] | None = (84, 84), resize: str = DEFAULT_FILTER,
                 channels: int = 3, what: str | None = None) -> np.ndarray:
    """A path or encoded PNG/JPEG bytes -> uint8 (H, W, channels) RGB (or grey), resized to `size` if needed."""
    return to_array(open_image(source, what), size, resize, channels)


def _decode_chunk(task: tuple) -> tuple[int, np.ndarray]:
    """Worker: decode one chunk. Module-level so that a process pool can pickle it."""
    start, sources, size, resize, channels, context = task
    out = np.empty((len(sources), *size, channels), dtype=np.uint8)
    for i, source in enumerate(sources):
        what = str(source) if isinstance(source, (str, os.PathLike)) or context is None else f"{context} image {start + i}"
        out[i] = decode_image(source, size, resize, channels, what)
    return start, out


def _init_decoder(parent: int) -> None:
    """Decoder workers end with the command that started them (their OS parent is the forkserver)."""
    from fewshot.lifeline import die_with_parent

    die_with_parent(parent)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a small forkserver (numpy + PIL loaded), not from the caller.

    A caller that imported torch holds ~300 MB it does not need in workers, and a reader holding a whole
    pickled split would have its pages shared copy-on-write with every worker; the forkserver starts clean.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - not Linux/macOS
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def decode_stream(sources: Iterable[Source], size: tuple[int, int], resize: str = DEFAULT_FILTER,
                  workers: int = 1, channels: int = 3, chunk: int = CHUNK,
                  context: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, uint8 (n, H, W, channels)) chunks of the decoded `sources`, in order.

    `workers` <= 1 decodes in this process; otherwise a pool of `workers` processes (see `_worker_context`)
    does, with at most 2 x workers chunks submitted and not yet consumed. `context` names the container (e.g. a pickle
    file) in errors about sources that are bytes.
    """
    resample_filter(resize)  # fail fast on a bad name, before any work
    size = (int(size[0]), int(size[1]))
    iterator = iter(sources)

    def tasks() -> Iterator[tuple]:
        start = 0
        while batch := list(islice(iterator, chunk)):
            yield start, batch, size, resize, channels, context
            start += len(batch)

    if workers <= 1:
        for task in tasks():
            yield _decode_chunk(task)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=_init_decoder,
                               initargs=(os.getpid(),))
    pending: deque[Future] = deque()
    try:
        task_iter = tasks()
        for task in task_iter:
            pending.append(pool.submit(_decode_chunk, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def image_header(path: str | os.PathLike) -> tuple[tuple[int, int], str]:
    """((height, width), PIL mode) from the file header only, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return (image.height, image.width), image.mode
    except FileNotFoundError:
        raise FewshotError(f"{path}: image file is not there") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FewshotError(f"{path}: not a readable image ({exc}); the file is truncated or corrupt") from None


def resize_array(images: np.ndarray, size: tuple[int, int], resize: str = DEFAULT_FILTER) -> np.ndarray:
    """Resize a uint8 (n, H, W, C) batch already decoded (pickled arrays) to `size`; a no-op at that size."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    channels = images.shape[3]
    out = np.empty((len(images), *size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image if channels == 3 else image[..., 0])
        out[i] = to_array(pil, size, resize, channels)
    return out


def exists_all(paths: Sequence[Path]) -> int | None:
    """Index of the first path that does not exist, or None when they all do."""
    for i, path in enumerate(paths):
        if not os.path.exists(path):
            return i
    return None
