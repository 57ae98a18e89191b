"""`fewshot prepare miniimagenet`: the four miniImageNet copies people hold, into one store (Ravi split, 84x84).

The variant is detected from what --src holds (first match wins):

1. pickle-cache: `mini-imagenet-cache-{train,val,test}.pkl` (Ren; torchmeta; learn2learn names the middle
   one `-validation`): dict `image_data` uint8 (N, 84, 84, 3) RGB, `class_dict` synset -> row indices.
2. gidaris: `miniImageNet_category_split_{train_phase_train,val,test}.pickle` (MetaOptNet, FEAT, ...):
   dict `data` uint8 (N, 84, 84, 3) RGB, `labels` global ints, `catname2label` synset -> global int.
3. ravi-csv: `{train,val,test}.csv` with header `filename,label` plus a flat `images/` folder of those JPEGs.
4. ilsvrc-csv: `{train,val,test}.csv` with header `class_name,image_name` (easyfsl) naming ILSVRC-2012 files,
   found at `<src>/<class_name>/<image_name>` (the ILSVRC train layout easyfsl reads) or `<src>/<image_name>`,
   or the same under `<src>/images/`.

Pickled images are stored as they are; image files are decoded to RGB and resized straight to 84x84 (no crop,
as Ravi & Larochelle's script did, which used LANCZOS) with the --resize filter. Pickles are read with the
restricted unpickler (fewshot.data.unpickle).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fewshot.data.formats._common import (
    IMAGE_SIZE, SPLITS, check_count, check_image_array, index_labels, read_csv_rows, require_folder, text,
    write_array_split, write_decoded_split,
)
from fewshot.data.registry import DatasetFormat, register_format
from fewshot.data.store import StoreWriter
from fewshot.data.unpickle import load_pickle
from fewshot.errors import FewshotError

DATASET = "miniimagenet"

# variant -> split -> file names accepted for it (the first that exists is read)
_FILES = {
    "pickle-cache": {"train": ["mini-imagenet-cache-train.pkl"],
                     "val": ["mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"],
                     "test": ["mini-imagenet-cache-test.pkl"]},
    "gidaris": {"train": ["miniImageNet_category_split_train_phase_train.pickle"],
                "val": ["miniImageNet_category_split_val.pickle"],
                "test": ["miniImageNet_category_split_test.pickle"]},
    "csv": {split: [f"{split}.csv"] for split in SPLITS},
}
_RAVI_HEADER = ("filename", "label")
_ILSVRC_HEADER = ("class_name", "image_name")

VARIANTS = {
    "pickle-cache": "mini-imagenet-cache-{train,val|validation,test}.pkl: dict image_data uint8 (N,84,84,3) RGB + "
                    "class_dict synset -> rows (Ren, torchmeta, learn2learn; Python-2 pickles accepted)",
    "gidaris": "miniImageNet_category_split_{train_phase_train,val,test}.pickle: dict data uint8 (N,84,84,3) RGB, "
               "labels (global ints), catname2label (MetaOptNet, FEAT, Meta-Baseline)",
    "ravi-csv": "{train,val,test}.csv with header filename,label (Ravi & Larochelle) + images/<filename> JPEGs; "
                "resized to 84x84 with --resize",
    "ilsvrc-csv": "{train,val,test}.csv with header class_name,image_name (easyfsl) + ILSVRC-2012 images at "
                  "<src>/<class_name>/<image_name> or <src>/<image_name> (or under <src>/images/); resized to 84x84",
}


def _split_files(src: Path, variant: str) -> dict[str, Path]:
    """The file of each split for a variant; a one-line error naming the first that is missing."""
    found = {}
    for split, names in _FILES[variant].items():
        path = next((src / n for n in names if (src / n).is_file()), None)
        if path is None:
            raise FewshotError(f"{src / names[0]} is missing: the {variant} copy of miniImageNet needs "
                               f"{' + '.join(n[0] for n in _FILES[variant].values())}")
        found[split] = path
    return found


def detect_variant(src: Path) -> tuple[str, dict[str, Path]]:
    """(variant, split -> file) from the files --src holds."""
    for variant in ("pickle-cache", "gidaris", "csv"):
        if any((src / n).is_file() for names in _FILES[variant].values() for n in names):
            files = _split_files(src, variant)
            if variant == "csv":
                header = tuple(c.lower() for c in read_header(files["train"]))
                variant = {_RAVI_HEADER: "ravi-csv", _ILSVRC_HEADER: "ilsvrc-csv"}.get(header)
                if variant is None:
                    raise FewshotError(f"{files['train']}: expected the header filename,label (Ravi) or "
                                       f"class_name,image_name (easyfsl), found {','.join(header) or 'nothing'}")
            return variant, files
    looked_for = "; ".join(
        ["mini-imagenet-cache-{train,val,test}.pkl", "miniImageNet_category_split_{train_phase_train,val,test}.pickle",
         "{train,val,test}.csv (+ images/)"])
    raise FewshotError(f"{src} holds none of the miniImageNet variants; looked for {looked_for} "
                       "(see `fewshot prepare --list`)")


def read_header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if any(c.strip() for c in row):
                return [c.strip() for c in row]
    return []


def _pickle_dict(path: Path, keys: tuple[str, ...]) -> dict:
    data = load_pickle(path)
    if not isinstance(data, dict) or any(k not in data for k in keys):
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise FewshotError(f"{path}: expected a dict with keys {', '.join(keys)}; found {found or 'an empty dict'}")
    return data


def _read_pickle_cache(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = _pickle_dict(path, ("image_data", "class_dict"))
    images = check_image_array(data["image_data"], path, "image_data")
    class_dict = {text(k): np.asarray(v, dtype=np.int64).ravel() for k, v in data["class_dict"].items()}
    names = sorted(class_dict)
    rows = np.concatenate([class_dict[n] for n in names]) if names else np.zeros(0, np.int64)
    check_count(path, len(rows), len(images), "class_dict")
    labels = np.full(len(images), -1, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(images)):
        raise FewshotError(f"{path}: class_dict names row {int(rows.max())} but image_data has {len(images)} rows")
    for index, name in enumerate(names):
        labels[class_dict[name]] = index
    if (labels < 0).any():
        raise FewshotError(f"{path}: class_dict lists some rows twice and misses {int((labels < 0).sum())} rows")
    return images, labels, names


def _read_gidaris(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = _pickle_dict(path, ("data", "labels"))
    images = check_image_array(data["data"], path, "data")
    global_labels = np.asarray(data["labels"], dtype=np.int64).ravel()
    check_count(path, len(global_labels), len(images))
    by_label = {int(v): text(k) for k, v in (data.get("catname2label") or {}).items()}
    present = np.unique(global_labels)
    offset = int(present.min())  # labels are global across splits: the split's classes start at its minimum
    names = [by_label.get(int(g), f"class{int(g) - offset:04d}") for g in present]
    return images, np.searchsorted(present, global_labels), names


def _csv_items(path: Path, header: tuple[str, str]) -> tuple[list[int], list[str], list[str]]:
    """(line numbers, image names, class names) of a split CSV."""
    rows = read_csv_rows(path, header)
    lines = [n for n, _ in rows]
    if header == _RAVI_HEADER:
        return lines, [c[0] for _, c in rows], [c[1] for _, c in rows]
    return lines, [c[1] for _, c in rows], [c[0] for _, c in rows]


def _missing_image(csv_path: Path, line: int, expected: Path, missing: int, total: int) -> FewshotError:
    return FewshotError(f"{csv_path}: line {line} names {expected}, which is not there "
                        f"({missing} of {total} images listed are missing)")


def _ravi_paths(src: Path, csv_path: Path) -> tuple[list[Path], list[str]]:
    lines, files, classes = _csv_items(csv_path, _RAVI_HEADER)
    folder = src / "images"
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    absent = [i for i, f in enumerate(files) if f not in present]
    if absent:
        raise _missing_image(csv_path, lines[absent[0]], folder / files[absent[0]], len(absent), len(files))
    return [folder / f for f in files], classes


def _ilsvrc_paths(src: Path, csv_path: Path) -> tuple[list[Path], list[str]]:
    lines, files, classes = _csv_items(csv_path, _ILSVRC_HEADER)
    layouts = [lambda root, c, f: root / c / f, lambda root, c, f: root / f]
    candidates = [(root, layout) for root in (src, src / "images") for layout in layouts]
    # The layout is the first one holding any of the first rows' images (the very first may be the one missing).
    chosen = next(((root, layout) for i in range(min(len(files), 50)) for root, layout in candidates
                   if layout(root, classes[i], files[i]).is_file()), None)
    if chosen is None:
        raise _missing_image(csv_path, lines[0], src / classes[0] / files[0], len(files), len(files))
    root, layout = chosen
    paths = [layout(root, c, f) for c, f in zip(classes, files)]
    absent = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    if absent:
        raise _missing_image(csv_path, lines[absent[0]], paths[absent[0]], len(absent), len(paths))
    return paths, classes


def prepare_miniimagenet(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2,
                         progress: bool = True) -> dict:
    src = require_folder(src, DATASET)
    variant, files = detect_variant(src)
    decodes = variant in ("ravi-csv", "ilsvrc-csv")
    source = f"miniimagenet-{variant}" + (f"(resize={resize},84x84)" if decodes else "")
    if decodes:  # check every split's listing before the long decode, so a missing image fails fast
        listed = {split: (_ravi_paths if variant == "ravi-csv" else _ilsvrc_paths)(src, path)
                  for split, path in files.items()}
    with StoreWriter(out, DATASET, source, force) as writer:
        for split, path in files.items():
            desc = f"{DATASET} {split}"
            if decodes:
                paths, class_per_image = listed[split]
                labels, names = index_labels(class_per_image)
                write_decoded_split(writer, split, paths, labels, names, size=IMAGE_SIZE, resize=resize,
                                    workers=workers, progress=progress, desc=desc)
                continue
            images, labels, names = (_read_pickle_cache if variant == "pickle-cache" else _read_gidaris)(path)
            write_array_split(writer, split, images, labels, names, size=IMAGE_SIZE, resize=resize,
                              progress=progress, desc=desc)
            del images
    return writer.splits


def _prepare(src, out, force: bool = False, resize: str = "bilinear", workers: int = 2, progress: bool = True,
             **_ignored) -> dict:
    return prepare_miniimagenet(src, out, force=force, resize=resize, workers=workers, progress=progress)


register_format(DatasetFormat(
    name=DATASET,
    description="miniImageNet (Vinyals 2016), Ravi split 64/16/20 classes x 600 images, 84x84 RGB; "
                "variant detected from --src",
    prepare=_prepare,
    variants=VARIANTS,
))
