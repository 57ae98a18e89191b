"""`fewshot prepare tieredimagenet`: Ren et al.'s release or its decompressed npz copy, streamed into a store.

Files are looked for in --src or in --src/tiered-imagenet:

1. ren-png: `{split}_images_png.pkl`, a pickled list of 1-D uint8 arrays each holding one PNG, and
   `{split}_labels.pkl` with `label_specific` (class per image, 0..C-1), `label_general` (category per image),
   `label_specific_str` (class names) and `label_general_str` (category names). Python-2 pickles.
2. npz: `{split}_images.npz` with key `images`, uint8 (N, 84, 84, 3) in **BGR** order (it was made with cv2),
   and `{split}_labels.pkl` with key `labels` (MetaOptNet) or Ren's keys.

Memory stays bounded: the PNG list (one pickle's compressed bytes) is the only large thing held, PNGs are
decoded by `workers` processes a chunk at a time into the store's memory-mapped split, and the npz member is
read (and inflated, if compressed) a chunk at a time straight from the zip, never whole. Each class keeps
its super-category (`categories` in the store) when the labels say it; class names are the synsets of
`label_specific_str`, else `class0000`...
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from fewshot.data.formats._common import (
    IMAGE_SIZE, SPLITS, check_count, progress_bar, require_folder, text, write_decoded_split,
)
from fewshot.data.images import resize_array
from fewshot.data.registry import DatasetFormat, register_format
from fewshot.data.store import StoreWriter
from fewshot.data.unpickle import load_pickle
from fewshot.errors import FewshotError

DATASET = "tieredimagenet"
NPZ_CHUNK = 1024
_IMAGE_FILES = {"ren-png": "{split}_images_png.pkl", "npz": "{split}_images.npz"}
_LABEL_FILE = "{split}_labels.pkl"

VARIANTS = {
    "ren-png": "{train,val,test}_images_png.pkl (pickled list of PNG-encoded uint8 arrays) + {split}_labels.pkl "
               "(label_specific, label_general, label_specific_str, label_general_str), in --src or "
               "--src/tiered-imagenet (Ren et al. 2018)",
    "npz": "{train,val,test}_images.npz (key images, uint8 (N,84,84,3) BGR) + {split}_labels.pkl (key labels, "
           "or Ren's keys) (MetaOptNet / decompressed release)",
}


def locate(src: Path) -> tuple[str, Path]:
    """(variant, folder) holding the files; a one-line error naming what was looked for otherwise."""
    for folder in (src, src / "tiered-imagenet"):
        for variant, pattern in _IMAGE_FILES.items():
            if any((folder / pattern.format(split=s)).is_file() for s in SPLITS):
                return variant, folder
    raise FewshotError(f"{src} holds none of the tieredImageNet variants; looked for "
                       "{train,val,test}_images_png.pkl or {train,val,test}_images.npz with {split}_labels.pkl, "
                       "there or in tiered-imagenet/ (see `fewshot prepare --list`)")


def _split_files(folder: Path, variant: str) -> dict[str, tuple[Path, Path]]:
    files = {}
    for split in SPLITS:
        pair = (folder / _IMAGE_FILES[variant].format(split=split), folder / _LABEL_FILE.format(split=split))
        for path in pair:
            if not path.is_file():
                raise FewshotError(f"{path} is missing: the {variant} copy of tieredImageNet needs "
                                   f"{_IMAGE_FILES[variant].format(split='{train,val,test}')} and "
                                   f"{_LABEL_FILE.format(split='{train,val,test}')}")
        files[split] = pair
    return files


def _names(strings, values: np.ndarray, per_item: np.ndarray, prefix: str, width: int) -> list[str]:
    """Names of `values` (sorted label ids): strings indexed by id, or given per image, else prefix+id."""
    strings = [] if strings is None else list(strings)
    if strings and len(strings) > int(values.max()):
        return [text(strings[int(v)]) for v in values]
    if strings and len(strings) == len(per_item):
        first = {int(v): i for i, v in reversed(list(enumerate(per_item)))}
        return [text(strings[first[int(v)]]) for v in values]
    return [f"{prefix}{int(v):0{width}d}" for v in values]


def read_labels(path: Path, n_images: int | None = None) -> tuple[np.ndarray, list[str], list[str] | None]:
    """(labels 0..C-1 per image, class names, category of each class or None) from a labels pickle.

    `n_images`, when known, is checked against the number of labels.
    """
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise FewshotError(f"{path}: expected a dict with key label_specific (Ren) or labels (MetaOptNet); "
                           f"found a {type(data).__name__}")
    key = "label_specific" if "label_specific" in data else "labels" if "labels" in data else None
    if key is None:
        raise FewshotError(f"{path}: expected key label_specific (Ren) or labels (MetaOptNet); "
                           f"found {', '.join(map(str, data)) or 'an empty dict'}")
    raw = np.asarray(data[key]).ravel()
    if raw.dtype.kind not in "iu":
        raise FewshotError(f"{path}: `{key}` should hold integers, found {raw.dtype}")
    if n_images is not None:
        check_count(path, len(raw), n_images, f"`{key}`")
    if len(raw) == 0:
        raise FewshotError(f"{path}: `{key}` is empty; the split has no images")
    values, labels = np.unique(raw, return_inverse=True)
    names = _names(data.get("label_specific_str"), values, raw, "class", 4)
    categories = None
    if "label_general" in data:
        general = np.asarray(data["label_general"]).ravel()
        check_count(path, len(general), len(raw), "`label_general`")
        pairs = np.unique(np.stack([labels, general]), axis=1)
        if pairs.shape[1] != len(values):
            raise FewshotError(f"{path}: some class has images in two categories (label_general); the file is corrupt")
        category_ids = pairs[1][np.argsort(pairs[0])]
        all_ids = np.unique(general)
        category_names = dict(zip(all_ids.tolist(),
                                  _names(data.get("label_general_str"), all_ids, general, "category", 2)))
        categories = [category_names[int(g)] for g in category_ids]
    return labels.astype(np.int64), names, categories


def _read_png_list(path: Path) -> list:
    images = load_pickle(path)
    if isinstance(images, np.ndarray) and images.dtype == object:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        raise FewshotError(f"{path}: expected a list of PNG-encoded uint8 arrays, found a {type(images).__name__}")
    return images


def _read_npy_header(stream, version: tuple[int, int]):
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version in readers:
        return readers[version](stream)
    return np.lib.format._read_array_header(stream, version)  # version 3.0 (utf-8 header) has no public reader


class NpzImages:
    """The `images` member of an npz, read a chunk at a time (inflated on the fly if it is compressed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            members = self._zip.namelist()
            if "images.npy" not in members:
                keys = ", ".join(m.removesuffix(".npy") for m in members) or "nothing"
                raise FewshotError(f"{path}: expected the key images, found {keys}")
            self._stream = self._zip.open("images.npy")
            version = np.lib.format.read_magic(self._stream)
            shape, fortran, dtype = _read_npy_header(self._stream, version)
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
            raise FewshotError(f"{path}: not a readable npz ({exc}); the file is truncated or corrupt") from None
        if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran:
            raise FewshotError(f"{path}: `images` should be a uint8 (N, H, W, 3) C-order array, found {dtype} {shape}")
        self.shape = tuple(int(s) for s in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, size: int):
        """Yield (start, uint8 (n, H, W, 3)) in file order."""
        row = int(np.prod(self.shape[1:]))
        for start in range(0, len(self), size):
            n = min(size, len(self) - start)
            try:
                buffer = self._stream.read(n * row)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise FewshotError(f"{self.path}: the images member is corrupt ({exc}); download it again") from None
            if len(buffer) != n * row:
                raise FewshotError(f"{self.path}: the images member ends after {start + len(buffer) // row} of "
                                   f"{len(self)} images; the file is truncated")
            yield start, np.frombuffer(buffer, dtype=np.uint8).reshape(n, *self.shape[1:])

    def close(self) -> None:
        self._stream.close()
        self._zip.close()


def prepare_tieredimagenet(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2,
                           progress: bool = True) -> dict:
    src = require_folder(src, DATASET)
    variant, folder = locate(src)
    files = _split_files(folder, variant)
    source = f"tieredimagenet-{variant}" + ("(PIL RGB)" if variant == "ren-png" else "(BGR->RGB)")
    with StoreWriter(out, DATASET, source, force) as writer:
        for split, (image_path, label_path) in files.items():
            desc = f"{DATASET} {split}"
            if variant == "ren-png":
                labels, names, categories = read_labels(label_path)  # small: fail on bad labels before the big load
                pngs = _read_png_list(image_path)
                check_count(label_path, len(labels), len(pngs), f"labels for {image_path.name}")
                write_decoded_split(writer, split, pngs, labels, names, categories=categories, size=IMAGE_SIZE,
                                    resize=resize, workers=workers, progress=progress, desc=desc,
                                    context=str(image_path))
                del pngs
                continue
            npz = NpzImages(image_path)
            try:
                labels, names, categories = read_labels(label_path, len(npz))
                sink = writer.split_sink(split, labels, names, (*IMAGE_SIZE, 3), categories)
                with progress_bar(len(npz), desc, progress) as bar:
                    for start, bgr in npz.chunks(NPZ_CHUNK):
                        rgb = resize_array(np.ascontiguousarray(bgr[..., ::-1]), IMAGE_SIZE, resize)
                        sink.put(np.arange(start, start + len(rgb)), rgb)
                        bar.update(len(rgb))
                writer.finish_split(split, sink)
            finally:
                npz.close()
    return writer.splits


def _prepare(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2, progress: bool = True,
             **_ignored) -> dict:
    return prepare_tieredimagenet(src, out, force=force, resize=resize, workers=workers, progress=progress)


register_format(DatasetFormat(
    name=DATASET,
    description="tieredImageNet (Ren 2018), 351/97/160 classes in 20/6/8 super-categories, 84x84 RGB, "
                "categories kept; streamed in bounded memory",
    prepare=_prepare,
    variants=VARIANTS,
))
