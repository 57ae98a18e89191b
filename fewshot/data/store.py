"""The prepared store: one folder per dataset, one sub-folder per split.

Layout (format version 1)::

    DIR/store.json                 dataset, source variant, split names
    DIR/<split>/images.npy         uint8 (N, H, W, C), grouped by class in canonical order; opens memory-mapped
    DIR/<split>/labels.npy         int32 (N,), non-decreasing class indices
    DIR/<split>/classes.json       {"names": [...sorted...], "categories": [...] | null}: each class's parent
    DIR/<split>/manifest.json      counts, shapes, sha256 of the three files above, the split checksum

Images are grouped by class so that an image is addressed as (class name, rank within class): the
episode files rely on it, and the sampler turns (class, rank) into a row with one addition.

Class hierarchy: `categories` names each class's parent (tieredImageNet: Ren's super-category; image
folders: an optional parent folder level), or is null. It is one level deep and optional, so stores
prepared before parents existed still open; the manifest's `n_parents` is informative only (absent from
older manifests). Omniglot writes null and its classes name their parent themselves
(`Alphabet/characterNN/rotDDD`): `StoreSplit.parents` reads the alphabet from the name, so the split
checksums of Omniglot stores, and every episode file and record that cites them, stay what they were,
and Omniglot stores prepared earlier have their hierarchy too.
"""
from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fewshot.atomic import atomic_directory, write_json_atomic
from fewshot.errors import EnvironmentFailure, FewshotError, environment_error

STORE_FORMAT = "fewshot-store"
STORE_VERSION = 1
_HASHED_FILES = ("images.npy", "labels.npy", "classes.json")
_RELEASE_EVERY = 256 << 20  # bytes a SplitSink writes between handing its mapped pages back to the kernel
# A split up to this size may stay mapped whole (its RSS is bounded by its size, and re-faulting pages after
# a release made gathering 3x slower on a miniImageNet-sized split). Larger splits hand their pages back
# every READ_RELEASE_EVERY bytes read: on a tieredImageNet-sized split (9.5 GB) that kept the mapped pages
# at about 480 MB (the kernel maps whole folios around each fault, several times the bytes read).
MAP_WHOLE_LIMIT = 1 << 30
# Datasets whose class names start with their parent's name ("Alphabet/characterNN/rotDDD").
PARENT_IN_NAME = ("omniglot",)
READ_RELEASE_EVERY = 64 << 20

def release_mapped_pages(array: np.ndarray) -> bool:
    """Unmap the pages of a memory-mapped array from this process (MADV_DONTNEED); False if it is not mapped.

    On a read-only shared file mapping this loses nothing and costs no disk read: the pages stay in the
    kernel's page cache, and a later read maps them again (a minor fault). Only the process's RSS drops.
    """
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base if isinstance(base.base, np.ndarray) else None
    mapping = getattr(base, "_mmap", None)  # numpy.memmap's mmap.mmap
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapping.madvise(mmap.MADV_DONTNEED)
    return True


class MappedReader:
    """Copies rows out of a (memory-mapped) image array, handing the mapped pages back every `release_every` bytes.

    Without it a process that reads a large split keeps every page it touched mapped: RSS grows to the bytes
    read (up to the split's size), although those pages are reclaimable page cache. With it RSS stays within
    a few times `release_every` of the process's own memory. The default releases only for splits larger than
    MAP_WHOLE_LIMIT; plain in-memory arrays are read the same way and never released.
    """

    def __init__(self, images: np.ndarray, release_every: int | None = None) -> None:
        self.images = images
        if release_every is None:
            release_every = READ_RELEASE_EVERY if images.nbytes > MAP_WHOLE_LIMIT else 0
        self.release_every = release_every  # 0: never
        self._unreleased = 0
        self.releases = 0

    def take(self, rows: np.ndarray, out: np.ndarray | None = None, known_in_range: bool = False) -> np.ndarray:
        """images[rows] as one copy (into `out` if given); `known_in_range` skips the bounds check (hot paths)."""
        rows = np.asarray(rows)
        if not known_in_range and rows.size and (rows.min() < 0 or rows.max() >= len(self.images)):
            raise IndexError(f"row {rows.min() if rows.min() < 0 else rows.max()} is outside 0..{len(self.images) - 1}")
        if out is None:
            out = np.empty((len(rows), *self.images.shape[1:]), dtype=self.images.dtype)
        # mode="wrap" copies straight into `out` (mode="raise" would buffer and copy twice).
        np.take(self.images, rows, axis=0, out=out, mode="wrap")
        self._count(out.nbytes)
        return out

    def _count(self, nbytes: int) -> None:
        if not self.release_every:
            return
        self._unreleased += nbytes
        if self._unreleased >= self.release_every:
            if release_mapped_pages(self.images):
                self.releases += 1
            self._unreleased = 0


def preallocate(path: Path) -> None:
    """Reserve the disk blocks of a (sparse) file before its memory map is written.

    Writing a page of a file mapping that the file system has no room for kills the process with SIGBUS,
    not an error; allocating every block up front turns a full disk into ENOSPC here, before any work."""
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # no such call here: write anyway
                return
            exc.filename = exc.filename or str(path)
            raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _split_checksum(file_hashes: dict[str, str]) -> str:
    joined = "".join(f"{name}:{file_hashes[name]};" for name in _HASHED_FILES)
    return hashlib.sha256(joined.encode()).hexdigest()


class SplitSink:
    """Receives the images of one split in any order and writes them grouped by class.

    `labels` are given in source order as class names or indices into `class_names`; `put(indices, images)`
    stores source images `indices` wherever their class puts them, so a streaming reader never holds more
    than one chunk of decoded images.
    """

    def __init__(
        self,
        folder: Path,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        image_shape: tuple[int, int, int],
        categories: Sequence[str] | None = None,
    ) -> None:
        names = [str(n) for n in class_names]
        if len(set(names)) != len(names):
            raise FewshotError(f"class names are not unique in split {folder.name}")
        order = sorted(range(len(names)), key=lambda i: names[i])
        remap = np.empty(len(names), dtype=np.int64)
        remap[order] = np.arange(len(names))
        source_labels = np.asarray(labels, dtype=np.int64)
        if source_labels.ndim != 1 or len(source_labels) == 0:
            raise FewshotError(f"split {folder.name} has no images")
        if source_labels.min() < 0 or source_labels.max() >= len(names):
            raise FewshotError(f"split {folder.name}: a label is outside 0..{len(names) - 1}")
        canonical = remap[source_labels]
        # Stable sort keeps the source order within each class: rank r is the r-th image of the class.
        self._order = np.argsort(canonical, kind="stable")
        self._destination = np.empty_like(self._order)
        self._destination[self._order] = np.arange(len(self._order))
        self.folder = folder
        self.names = [names[i] for i in order]
        self.categories = None if categories is None else [str(categories[i]) for i in order]
        self.labels = canonical[self._order].astype(np.int32)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._images = np.lib.format.open_memmap(
            folder / "images.npy", mode="w+", dtype=np.uint8, shape=(len(self.labels), *self.image_shape)
        )
        preallocate(folder / "images.npy")
        self._written = np.zeros(len(self.labels), dtype=bool)
        self._unreleased = 0

    def put(self, source_indices: Sequence[int] | np.ndarray, images: np.ndarray) -> None:
        idx = np.asarray(source_indices, dtype=np.int64)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise FewshotError(
                f"split {self.folder.name}: images must be uint8 {self.image_shape}, got {images.dtype} {images.shape[1:]}"
            )
        dest = self._destination[idx]
        self._images[dest] = images
        self._written[dest] = True
        self._unreleased += images.nbytes
        if self._unreleased >= _RELEASE_EVERY:
            self._release_pages()

    def _release_pages(self) -> None:
        """Write the mapped pages back and unmap them: a 10 GB split would otherwise stay in this process's RSS.

        MADV_DONTNEED on a shared file mapping loses nothing: the data is in the file (and page cache).
        """
        self._images.flush()
        release_mapped_pages(self._images)
        self._unreleased = 0

    def close(self, dataset: str, split: str, source_variant: str) -> dict:
        if not self._written.all():
            missing = int((~self._written).sum())
            raise FewshotError(f"split {split}: {missing} images were never written (reader bug or truncated source)")
        self._images.flush()
        shape = self._images.shape
        del self._images
        np.save(self.folder / "labels.npy", self.labels)
        with open(self.folder / "classes.json", "w") as handle:
            json.dump({"names": self.names, "categories": self.categories}, handle, indent=0)
        hashes = {name: sha256_file(self.folder / name) for name in _HASHED_FILES}
        counts = np.bincount(self.labels, minlength=len(self.names))
        manifest = {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "dataset": dataset,
            "split": split,
            "source_variant": source_variant,
            "n_images": int(shape[0]),
            "n_classes": len(self.names),
            "image_shape": list(shape[1:]),
            "class_counts_min": int(counts.min()),
            "class_counts_max": int(counts.max()),
            "n_parents": None if self.categories is None else len(set(self.categories)),
            "sha256": hashes,
            "checksum": _split_checksum(hashes),
        }
        write_json_atomic(self.folder / "manifest.json", manifest)
        return manifest


class StoreWriter:
    """Builds a whole store in a temporary folder and renames it into place only when every split is done.

    An interrupted conversion therefore leaves nothing at `out` (just run it again); with `force` an existing
    store is replaced only once the new one is complete.
    """

    def __init__(self, out: str | os.PathLike, dataset: str, source_variant: str, force: bool = False) -> None:
        self.out = Path(out)
        self.dataset = dataset
        self.source_variant = source_variant
        self.force = force
        self.splits: dict[str, dict] = {}
        self._ctx = None
        self._tmp: Path | None = None

    def __enter__(self) -> "StoreWriter":
        check_output_folder(self.out, self.force)
        # An existing empty folder (checked just above) is replaced too, like a forced store.
        self._ctx = atomic_directory(self.out, replace=self.force or self.out.is_dir())
        self._tmp = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                write_json_atomic(
                    self._tmp / "store.json",
                    {
                        "format": STORE_FORMAT,
                        "format_version": STORE_VERSION,
                        "dataset": self.dataset,
                        "source_variant": self.source_variant,
                        "splits": list(self.splits),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )
            except BaseException as failure:
                exc_type, exc, tb = type(failure), failure, failure.__traceback__
        try:  # a failed store's temporary folder is removed here
            suppressed = bool(self._ctx.__exit__(exc_type, exc, tb))
        except OSError as failure:  # the rename into place failed
            exc = failure
            suppressed = False
        if isinstance(exc, OSError) and not suppressed:  # the disk filled (or turned read-only) while writing
            error = environment_error(exc)
            if error is not None:
                raise EnvironmentFailure(f"writing the store {self.out} (the partial store was removed): "
                                         f"{str(error).split(': ', 1)[-1]}") from None
        if exc is not None and not suppressed:
            raise exc
        return suppressed

    def split_sink(
        self,
        split: str,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        image_shape: tuple[int, int, int],
        categories: Sequence[str] | None = None,
    ) -> SplitSink:
        return SplitSink(self._tmp / split, labels, class_names, image_shape, categories)

    def finish_split(self, split: str, sink: SplitSink) -> dict:
        self.splits[split] = sink.close(self.dataset, split, self.source_variant)
        return self.splits[split]

    def add_split(
        self,
        split: str,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        categories: Sequence[str] | None = None,
    ) -> dict:
        """Write a split held in memory: images uint8 (N, H, W, C), labels indexing class_names."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        sink = self.split_sink(split, labels, class_names, images.shape[1:], categories)
        sink.put(np.arange(len(images)), images)
        return self.finish_split(split, sink)


def check_output_folder(out: Path, force: bool) -> None:
    """Refuse to touch a folder that already holds something, unless forced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FewshotError(f"{out} exists and is not a folder; choose another --out")
    if any(out.iterdir()) and not force:
        what = "a prepared store" if (out / "store.json").exists() else "files"
        raise FewshotError(f"{out} already holds {what}; choose another --out or pass --force to replace it")


@dataclass
class StoreSplit:
    """One split of a prepared store, opened memory-mapped. Also a plain torch-style Dataset."""

    path: Path
    manifest: dict
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    categories: list[str] | None
    class_counts: np.ndarray = field(init=False)
    class_offsets: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.class_counts = np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)
        self.class_offsets = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]]).astype(np.int64)

    @property
    def name(self) -> str:
        return self.manifest["split"]

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def checksum(self) -> str:
        return self.manifest["checksum"]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def parents(self) -> list[str] | None:
        """Each class's parent: its category in classes.json; for Omniglot, the alphabet its name starts
        with; None where the store names none."""
        if self.categories:
            return self.categories
        if self.dataset in PARENT_IN_NAME and all("/" in n for n in self.class_names):
            return [n.split("/", 1)[0] for n in self.class_names]
        return None

    def hierarchy(self) -> tuple[list[str], np.ndarray] | None:
        """(sorted parent names, parent index of each class (C,)), or None without parents."""
        parents = self.parents
        if not parents:
            return None
        names, index = np.unique(np.asarray(parents, dtype=str), return_inverse=True)
        return [str(n) for n in names], index.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        import torch

        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1).float().div_(255.0)
        return image, int(self.labels[index])

    def verify(self) -> list[str]:
        """Re-hash the arrays; return the names of files whose hash differs from the manifest."""
        expected = self.manifest["sha256"]
        return [name for name in _HASHED_FILES if sha256_file(self.path / name) != expected[name]]


class Store:
    """A prepared store on disk: `Store(DIR).split("test")`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        meta_path = self.root / "store.json"
        if not self.root.is_dir():
            raise FewshotError(f"data folder {self.root} does not exist; prepare one with `fewshot prepare`")
        if not meta_path.exists():
            raise FewshotError(f"{self.root} is not a prepared store (no store.json); prepare one with `fewshot prepare`")
        try:
            self.meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FewshotError(f"{meta_path} is corrupt ({exc}); prepare the store again") from None
        if (not isinstance(self.meta, dict) or self.meta.get("format") != STORE_FORMAT
                or self.meta.get("format_version") != STORE_VERSION):
            raise FewshotError(f"{meta_path} is not a version-{STORE_VERSION} fewshot store")
        splits = self.meta.get("splits")
        if (not isinstance(self.meta.get("dataset"), str) or not isinstance(splits, list) or not splits
                or not all(isinstance(s, str) and s and "/" not in s and s not in (".", "..") for s in splits)):
            raise FewshotError(f"{meta_path} is damaged (it needs a dataset name and a list of split names); "
                               "prepare the store again")
        self._open: dict[str, StoreSplit] = {}

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def split_names(self) -> list[str]:
        return list(self.meta["splits"])

    def split(self, name: str) -> StoreSplit:
        if name in self._open:
            return self._open[name]
        if name not in self.meta["splits"]:
            raise FewshotError(f"store {self.root} has no split {name!r}; it has {', '.join(self.meta['splits'])}")
        folder = self.root / name
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            classes = json.loads((folder / "classes.json").read_text())
            images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(folder / "labels.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:  # an empty .npy is an EOFError
            raise FewshotError(f"split {folder} is damaged ({str(exc) or type(exc).__name__}); run `fewshot verify "
                               f"{self.root}` or prepare again") from None
        # labels.npy and classes.json say which image is which class and are small, so every open re-hashes
        # them; images.npy (up to gigabytes) is re-hashed by `fewshot verify`.
        hashes = manifest.get("sha256") if isinstance(manifest, dict) else None
        for name in ("labels.npy", "classes.json"):
            if sha256_file(folder / name) != (hashes.get(name) if isinstance(hashes, dict) else None):
                raise FewshotError(f"{folder / name} does not match its manifest checksum; the store is damaged: "
                                   f"run `fewshot verify {self.root}` or prepare it again")
        _check_split_files(folder, manifest, classes, images, labels)
        split = StoreSplit(folder, manifest, images, labels, list(classes["names"]), classes.get("categories"))
        self._open[name] = split
        return split

    def verify(self) -> dict[str, list[str]]:
        return {name: self.split(name).verify() for name in self.split_names}


MANIFEST_TYPES = {"dataset": str, "split": str, "n_images": int, "n_classes": int, "image_shape": list,
                  "sha256": dict, "checksum": str}


def _check_split_files(folder: Path, manifest, classes, images: np.ndarray, labels: np.ndarray) -> None:
    """What a split's files say agrees: manifest fields and types, class names, array shapes and dtypes,
    labels grouped by class and within range. A one-line error naming the file, never a traceback later."""
    def damaged(what: str) -> FewshotError:
        return FewshotError(f"{folder / what}; the store is damaged: prepare it again")

    if not isinstance(manifest, dict):
        raise damaged("manifest.json is not a JSON object")
    for key, kind in MANIFEST_TYPES.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise damaged(f"manifest.json: {key!r} should be a {kind.__name__}, found {manifest.get(key)!r}")
    shape = manifest["image_shape"]
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise damaged(f"manifest.json: image_shape {shape!r} is not [height, width, channels]")
    if not isinstance(classes, dict) or not isinstance(classes.get("names"), list) or not all(
            isinstance(n, str) for n in classes["names"]) or len(classes["names"]) != manifest["n_classes"]:
        raise damaged(f"classes.json should list the {manifest['n_classes']} class names")
    categories = classes.get("categories")
    if categories is not None and (not isinstance(categories, list) or len(categories) != manifest["n_classes"]
                                   or not all(isinstance(c, str) for c in categories)):
        raise damaged("classes.json: categories should be null or one a class")
    if images.dtype != np.uint8 or images.ndim != 4 or list(images.shape[1:]) != shape:
        raise damaged(f"images.npy holds {images.dtype} {images.shape}, not uint8 (N, {', '.join(map(str, shape))})")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise damaged(f"labels.npy holds {labels.dtype} {labels.shape}, not integer (N,)")
    if len(images) != len(labels) or len(images) != manifest["n_images"]:
        raise damaged(f"images.npy has {len(images)} images, labels.npy {len(labels)} labels, the manifest says "
                      f"{manifest['n_images']}")
    if len(labels) and (labels[0] < 0 or labels[-1] >= manifest["n_classes"] or (np.diff(labels) < 0).any()):
        raise damaged("labels.npy: labels are not grouped by class within 0..n_classes-1")


def open_split(root: str | os.PathLike, split: str) -> StoreSplit:
    return Store(root).split(split)


def iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)
