"""Helpers shared by the image-dataset readers: locate files, read split CSVs, stream splits into a store.

(The leading underscore keeps the format registry from importing this module as a format.)
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fewshot.data.images import Source, decode_stream, resize_array
from fewshot.data.store import StoreWriter
from fewshot.errors import FewshotError

SPLITS = ("train", "val", "test")
IMAGE_SIZE = (84, 84)
ARRAY_CHUNK = 1024


def require_folder(src, dataset: str) -> Path:
    if src is None:
        raise FewshotError(f"prepare {dataset} needs --src, the folder holding the downloaded files")
    src = Path(src)
    if not src.exists():
        raise FewshotError(f"{dataset} source folder {src} does not exist; point --src at the folder holding the files")
    if not src.is_dir():
        raise FewshotError(f"{dataset} source {src} is a file; point --src at the folder that holds it")
    return src


def text(value) -> str:
    """A label string from a pickle: str, Python-2 bytes or a numpy string."""
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def read_csv_rows(path: Path, header: Sequence[str]) -> list[tuple[int, list[str]]]:
    """(line number, cells) of a split CSV whose first row must be `header`; blank lines are skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(handle), start=1)
                    if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FewshotError(f"{path}: not a readable CSV ({exc})") from None
    if not rows or [c.lower() for c in rows[0][1]] != list(header):
        found = ",".join(rows[0][1]) if rows else "nothing"
        raise FewshotError(f"{path}: expected the header {','.join(header)}, found {found}")
    bad = next(((n, cells) for n, cells in rows[1:] if len(cells) != len(header)), None)
    if bad:
        raise FewshotError(f"{path}: line {bad[0]} has {len(bad[1])} fields, expected {len(header)} ({','.join(header)})")
    if len(rows) == 1:
        raise FewshotError(f"{path}: the CSV lists no images")
    return rows[1:]


def index_labels(names_per_image: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per-image class names -> (int labels into the sorted unique names, those names)."""
    names, labels = np.unique(np.asarray(names_per_image, dtype=object).astype(str), return_inverse=True)
    return labels.astype(np.int64), [str(n) for n in names]


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True, mininterval=0.5)


def write_decoded_split(writer: StoreWriter, split: str, sources: Iterable[Source], labels: np.ndarray,
                        class_names: Sequence[str], *, categories: Sequence[str] | None = None,
                        size: tuple[int, int] = IMAGE_SIZE, channels: int = 3, resize: str = "bilinear",
                        workers: int = 1, progress: bool = True, desc: str = "", context: str | None = None) -> dict:
    """Decode encoded images (paths or bytes) with `workers` processes straight into one split of the store."""
    sink = writer.split_sink(split, labels, class_names, (*size, channels), categories)
    with progress_bar(len(labels), desc or split, progress) as bar:
        for start, images in decode_stream(sources, size, resize, workers, channels, context=context):
            sink.put(np.arange(start, start + len(images)), images)
            bar.update(len(images))
    return writer.finish_split(split, sink)


def check_image_array(images, path: Path, what: str = "images") -> np.ndarray:
    """A pickled image array must be uint8 (N, H, W, 3)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise FewshotError(f"{path}: `{what}` should be a uint8 (N, H, W, 3) array, found {dtype} {shape}")
    return images


def write_array_split(writer: StoreWriter, split: str, images: np.ndarray, labels: np.ndarray,
                      class_names: Sequence[str], *, categories: Sequence[str] | None = None,
                      size: tuple[int, int] = IMAGE_SIZE, resize: str = "bilinear", progress: bool = True,
                      desc: str = "") -> dict:
    """Write already-decoded uint8 (N, H, W, 3) images in chunks, resizing those not at `size`."""
    sink = writer.split_sink(split, labels, class_names, (*size, images.shape[3]), categories)
    with progress_bar(len(images), desc or split, progress) as bar:
        for start in range(0, len(images), ARRAY_CHUNK):
            chunk = resize_array(np.asarray(images[start:start + ARRAY_CHUNK]), size, resize)
            sink.put(np.arange(start, start + len(chunk)), chunk)
            bar.update(len(chunk))
    return writer.finish_split(split, sink)


def check_count(path: Path, n_labels: int, n_images: int, labels_from: str = "labels") -> None:
    if n_labels != n_images:
        raise FewshotError(f"{path}: {n_labels} labels (from {labels_from}) but {n_images} images; "
                           "the file is inconsistent or truncated: download it again")
