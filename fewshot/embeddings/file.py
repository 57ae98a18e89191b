"""Embedding files: a split's features, each row named by (class name, image rank), with a checksum.

An `.npz` (loads with allow_pickle=False) holding `embeddings` (M, D) float32, `labels` (M,) integer
indices into the meta's class names, `ranks` (M,) each row's rank within its class in the store (the
episode files' naming of images), and `meta`, a JSON string: format and version, dataset, split, class
names and per-class image counts of the split, the store's checksum (or null), a description of where the
features came from, and `checksum`, a sha256 over the arrays and the rest of the meta. docs/embeddings.md
specifies it, with a numpy-only recipe for writing one from features made by any other tool.

The file is the embedding cache of `fewshot eval` written down, so `fewshot eval --embeddings FILE`
scores the same episodes the same way as `fewshot eval --run`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot.atomic import write_bytes_atomic
from fewshot.embeddings.split import EmbeddedSplit
from fewshot.errors import FewshotError

EMBEDDINGS_FORMAT = "fewshot-embeddings"
EMBEDDINGS_VERSION = 1
ARRAYS = ("embeddings", "labels", "ranks")


def embeddings_checksum(embeddings: np.ndarray, labels: np.ndarray, ranks: np.ndarray, meta: dict) -> str:
    """sha256 over each array (float32 / int32 little-endian bytes, then its shape as "M,D" text) and the meta.

    The meta is hashed as json.dumps(meta without "checksum", sort_keys=True, separators=(",", ":")).
    """
    digest = hashlib.sha256()
    for array, dtype in ((embeddings, "<f4"), (labels, "<i4"), (ranks, "<i4")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
        digest.update(",".join(str(n) for n in array.shape).encode())
    body = {k: v for k, v in meta.items() if k != "checksum"}
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


@dataclass
class EmbeddingFile:
    """Also a store of embeddings for the evaluation (`split_names`, `root`, `split(name)`)."""

    embeddings: np.ndarray
    labels: np.ndarray
    ranks: np.ndarray
    meta: dict
    path: Path | None = None

    @property
    def checksum(self) -> str:
        return self.meta["checksum"]

    @property
    def where(self) -> str:
        return f"embedding file {self.path}" if self.path else "embedding file"

    @property
    def split_names(self) -> list[str]:
        return [self.meta["split"]]

    @property
    def root(self) -> Path | None:
        return self.path

    def __len__(self) -> int:
        return len(self.embeddings)

    def split(self, name: str) -> EmbeddedSplit:
        if name != self.meta["split"]:
            raise FewshotError(f"{self.where} holds split {self.meta['split']!r}, not {name!r}")
        # Without a store checksum, the file's own stands in: resolving episodes then always maps them by
        # class name (an episode file's store checksum never equals it).
        checksum = self.meta.get("store_checksum") or f"embeddings-{self.checksum}"
        return EmbeddedSplit(self.meta["dataset"], name, list(self.meta["class_names"]),
                             np.asarray(self.meta["class_counts"], dtype=np.int64), checksum, self.embeddings,
                             self.labels, self.ranks, self.where)

    def check_episodes(self, episode_meta: dict, episode_path: str | os.PathLike | None = None) -> None:
        """Refuse episodes drawn from other classes, other per-class counts, another dataset or split."""
        episodes = f"episode file {episode_path}" if episode_path else "the episode file"
        meta = self.meta
        for key in ("dataset", "split"):
            if episode_meta[key] != meta[key]:
                raise FewshotError(f"{self.where} is for {key} {meta[key]!r} but {episodes} is for "
                                   f"{episode_meta[key]!r}; export the embeddings of that {key}")
        counts = dict(zip(meta["class_names"], meta["class_counts"]))
        missing = [n for n in episode_meta["class_names"] if n not in counts]
        if missing:
            raise FewshotError(f"{self.where} lacks {len(missing)} classes that {episodes} uses "
                               f"(e.g. {missing[0]!r}); it was made for a different split or store")
        for name, count in zip(episode_meta["class_names"], episode_meta["class_counts"]):
            if int(counts[name]) != int(count):
                raise FewshotError(f"{self.where} says class {name!r} has {counts[name]} images but {episodes} "
                                   f"expects {count}; they were made from different stores")
        if (meta.get("store_checksum") and meta["store_checksum"] == episode_meta.get("store_checksum")
                and list(meta["class_names"]) != list(episode_meta["class_names"])):
            raise FewshotError(f"{self.where} names the store of {episodes} but lists other classes; it is damaged "
                               "or was written wrongly (see docs/embeddings.md)")

    def save(self, path: str | os.PathLike) -> Path:
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=self.embeddings.astype(np.float32, copy=False),
                 labels=self.labels.astype(np.int32, copy=False), ranks=self.ranks.astype(np.int32, copy=False),
                 meta=np.array(json.dumps(self.meta)))
        write_bytes_atomic(path, buffer.getvalue())
        self.path = Path(path)
        return self.path


def build_embedding_file(embeddings: np.ndarray, labels: np.ndarray, ranks: np.ndarray, dataset: str, split: str,
                         class_names: list[str], class_counts, store_checksum: str | None, source: dict,
                         **extra) -> EmbeddingFile:
    """An embedding file from arrays; `source` says where the features came from, `extra` adds meta fields."""
    meta = {
        "format": EMBEDDINGS_FORMAT,
        "format_version": EMBEDDINGS_VERSION,
        "dataset": str(dataset),
        "split": str(split),
        "store_checksum": store_checksum,
        "class_names": [str(n) for n in class_names],
        "class_counts": [int(c) for c in class_counts],
        "source": source,
        **extra,
    }
    meta = json.loads(json.dumps(meta))  # the meta exactly as it will read back (tuples are lists, keys text)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    labels, ranks = np.asarray(labels, dtype=np.int32), np.asarray(ranks, dtype=np.int32)
    _validate(embeddings, labels, ranks, meta, "embedding file")
    meta["checksum"] = embeddings_checksum(embeddings, labels, ranks, meta)
    return EmbeddingFile(embeddings, labels, ranks, meta)


def load_embedding_file(path: str | os.PathLike) -> EmbeddingFile:
    path = Path(path)
    where = f"embedding file {path}"
    if not path.is_file():
        raise FewshotError(f"{where} does not exist; export one with `fewshot embed`")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not an .npz archive of arrays")
        with data:
            absent = [k for k in (*ARRAYS, "meta") if k not in data.files]
            if absent:
                raise FewshotError(f"{path} is not a fewshot embedding file (it has no {absent[0]!r} array; "
                                   "see docs/embeddings.md)")
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
        raise FewshotError(f"{path} is not a readable fewshot embedding file ({exc}); see docs/embeddings.md") from None
    if not isinstance(meta, dict) or meta.get("format") != EMBEDDINGS_FORMAT:
        raise FewshotError(f"{path} is not a fewshot embedding file (its meta has no format "
                           f"{EMBEDDINGS_FORMAT!r}; see docs/embeddings.md)")
    if meta.get("format_version") != EMBEDDINGS_VERSION:
        raise FewshotError(f"{where} has format version {meta.get('format_version')!r}; this fewshot reads "
                           f"version {EMBEDDINGS_VERSION}")
    embeddings, labels, ranks = arrays["embeddings"], arrays["labels"], arrays["ranks"]
    for name, array in (("labels", labels), ("ranks", ranks)):
        if not np.issubdtype(array.dtype, np.integer):
            raise FewshotError(f"{where}: {name} must be integers, not {array.dtype}")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise FewshotError(f"{where}: embeddings must be float32, not {embeddings.dtype}")
    _validate(embeddings, labels, ranks, meta, where)
    if embeddings_checksum(embeddings, labels, ranks, meta) != meta.get("checksum"):
        raise FewshotError(f"{where} fails its checksum; it was modified or damaged: export it again")
    return EmbeddingFile(embeddings.astype(np.float32, copy=False), labels.astype(np.int32, copy=False),
                         ranks.astype(np.int32, copy=False), meta, path)


def _validate(embeddings: np.ndarray, labels: np.ndarray, ranks: np.ndarray, meta: dict, where: str) -> None:
    """Shapes, names and ranges: every row names one image of the split, and no image twice."""
    for key in ("dataset", "split", "class_names", "class_counts"):
        if key not in meta:
            raise FewshotError(f"{where}: its meta lacks {key!r} (see docs/embeddings.md)")
    names, counts = meta["class_names"], meta["class_counts"]
    if (not isinstance(names, list) or not isinstance(counts, list) or len(names) != len(counts) or not names
            or not all(isinstance(n, str) for n in names)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in counts)):
        raise FewshotError(f"{where}: class_names and class_counts must be equally long lists of names and "
                           "positive counts")
    if len(set(names)) != len(names):
        raise FewshotError(f"{where}: class_names repeat a name")
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise FewshotError(f"{where}: embeddings must be (rows, dim) with rows and dim > 0, got shape "
                           f"{embeddings.shape}")
    rows = len(embeddings)
    if labels.shape != (rows,) or ranks.shape != (rows,):
        raise FewshotError(f"{where}: labels {labels.shape} and ranks {ranks.shape} must each have one entry a row "
                           f"({rows})")
    if labels.min() < 0 or labels.max() >= len(names):
        raise FewshotError(f"{where}: a label is outside 0..{len(names) - 1} (labels index class_names)")
    counts_array = np.asarray(counts, dtype=np.int64)
    labels64, ranks64 = labels.astype(np.int64), ranks.astype(np.int64)
    bad = np.flatnonzero((ranks64 < 0) | (ranks64 >= counts_array[labels64]))
    if bad.size:
        i = int(bad[0])
        raise FewshotError(f"{where}: row {i} has rank {ranks64[i]} but class {names[labels64[i]]!r} has "
                           f"{counts_array[labels64[i]]} images (ranks are 0..count-1)")
    offsets = np.concatenate([[0], np.cumsum(counts_array)[:-1]])
    image = offsets[labels64] + ranks64
    if len(np.unique(image)) != rows:
        raise FewshotError(f"{where}: some (class, rank) pair has more than one row")
    if not np.isfinite(embeddings).all():
        i = int(np.flatnonzero(~np.isfinite(embeddings).all(axis=1))[0])
        raise FewshotError(f"{where}: row {i} holds a non-finite value (NaN or inf)")
