"""`fewshot prepare imagefolder`: any dataset laid out as `<src>/<split>/<class>/<image>`.

Every sub-folder of --src that holds class folders is a split, named by its folder (`validation` and
`valid` become `val`). Image files are .png .jpg .jpeg .bmp .gif .webp .tif .tiff (any case); hidden files
are skipped. One image size serves the whole store: the **most common** (height, width) among all images,
read from the file headers before any decoding (ties go to the larger image); images of another size are
resized straight to it (no crop) with the --resize filter. Images are stored as grey (1 channel) when every
file is greyscale, as RGB otherwise. The store's dataset name is the --src folder's name (e.g. `cub`), so
results keep saying which data they came from.

With `--parent-level` the tree has one more level, `<src>/<split>/<parent>/<class>/<image>`: each class
is named `parent/class` and names its parent in the store's class hierarchy (e.g. CUB orders, or
alphabets of a character set).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from fewshot.data.formats._common import SPLITS, require_folder, write_decoded_split
from fewshot.data.images import image_header
from fewshot.data.registry import DatasetFormat, register_format
from fewshot.data.store import StoreWriter
from fewshot.errors import FewshotError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_ALIASES = {"validation": "val", "valid": "val"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in EXTENSIONS)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def find_splits(src: Path, parent_level: bool = False) -> dict[str, dict[str, list[Path]]]:
    """split -> class -> image paths (sorted by name), from `<src>/<split>/<class>/<image>`.

    With `parent_level`, from `<src>/<split>/<parent>/<class>/<image>`, classes named `parent/class`."""
    splits: dict[str, dict[str, list[Path]]] = {}
    for split_dir in _subfolders(src):
        if parent_level:
            class_dirs = [(f"{parent.name}/{c.name}", c) for parent in _subfolders(split_dir) for c in _subfolders(parent)]
        else:
            class_dirs = [(c.name, c) for c in _subfolders(split_dir)]
        if not class_dirs:
            continue
        classes = {}
        for class_name, class_dir in class_dirs:
            images = _images_in(class_dir)
            if not images:
                raise FewshotError(f"{class_dir} holds no image files ({' '.join(sorted(EXTENSIONS))}); "
                                   "add its images or remove the folder")
            classes[class_name] = images
        name = SPLIT_ALIASES.get(split_dir.name.lower(), split_dir.name)
        if name in splits:
            raise FewshotError(f"{split_dir}: two folders of {src} both name the split {name!r}; keep one")
        splits[name] = classes
    if splits:  # train, val, test first, then any other split in name order
        order = {name: i for i, name in enumerate(SPLITS)}
        splits = dict(sorted(splits.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    else:
        loose = _images_in(src)
        hint = (f"; it holds {len(loose)} images directly" if loose else "")
        layout = "<split>/<parent>/<class>/<image>" if parent_level else "<split>/<class>/<image>"
        example = "train/<parent>/<class>" if parent_level else "train/<class>"
        raise FewshotError(f"{src} holds no {layout} folders (looked for image files {3 if parent_level else 2} "
                           f"folders down, e.g. {src}/{example}/0001.jpg){hint}")
    return splits


def choose_size(paths: list[Path]) -> tuple[tuple[int, int], int]:
    """((height, width), channels): the most common size (ties -> larger), grey only if every image is."""
    sizes: Counter = Counter()
    grey = True
    for path in paths:
        size, mode = image_header(path)
        sizes[size] += 1
        grey = grey and mode in GREY_MODES
    size = max(sizes, key=lambda s: (sizes[s], s[0] * s[1], s))
    return size, 1 if grey else 3


def _dataset_name(src: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", src.resolve().name).strip("-").lower() or "imagefolder"


def prepare_imagefolder(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2,
                        progress: bool = True, parent_level: bool = False) -> dict:
    src = require_folder(src, "imagefolder")
    splits = find_splits(src, parent_level)
    all_paths = [p for classes in splits.values() for images in classes.values() for p in images]
    size, channels = choose_size(all_paths)
    source = f"imagefolder({size[0]}x{size[1]}x{channels},resize={resize})"
    with StoreWriter(out, _dataset_name(src), source, force) as writer:
        for split, classes in splits.items():
            names = sorted(classes)
            paths = [p for name in names for p in classes[name]]
            labels = np.repeat(np.arange(len(names)), [len(classes[n]) for n in names])
            parents = [n.split("/", 1)[0] for n in names] if parent_level else None
            write_decoded_split(writer, split, paths, labels, names, categories=parents, size=size, channels=channels,
                                resize=resize, workers=workers, progress=progress, desc=f"{src.name} {split}")
    return writer.splits


def _prepare(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2, progress: bool = True,
             parent_level: bool = False, **_ignored) -> dict:
    return prepare_imagefolder(src, out, force=force, resize=resize, workers=workers, progress=progress,
                               parent_level=parent_level)


register_format(DatasetFormat(
    name="imagefolder",
    description="any <split>/<class>/<image> tree (e.g. CUB or CIFAR-FS exported to files); all images resized "
                "to the most common size; dataset named after the --src folder",
    prepare=_prepare,
    variants={"split-class-folders": "<src>/<split>/<class>/<image>.{png,jpg,jpeg,bmp,gif,webp,tif,tiff}; one "
                                     "split per folder (validation -> val); grey kept as 1 channel when every "
                                     "image is grey",
              "split-parent-class-folders": "with --parent-level: <src>/<split>/<parent>/<class>/<image>; classes "
                                            "named parent/class, the parent kept as the class hierarchy"},
))
