"""Tiny copies of the real miniImageNet / tieredImageNet / image-folder formats, built byte-exact in tests.

Every image is one solid colour, unique to its (split, class, image), so a test can check that each image
landed in the right class, in source order and in RGB order after JPEG/PNG coding (JPEG keeps a flat
colour within a few levels). `py2_pickle_dumps` writes what Python 2's cPickle wrote (protocol 2, byte
strings as BINSTRING, numpy arrays as numpy.core.multiarray._reconstruct), so the latin1 fallback is tested
on the real thing rather than on a Python-3 imitation.
"""
from __future__ import annotations

import csv
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# split -> (number of classes, images per class); small so a whole conversion takes well under a second.
MINI_SPLITS = {"train": (3, 4), "val": (2, 3), "test": (2, 5)}
JPEG_TOLERANCE = 6  # max |decoded - true| for a flat-colour JPEG at quality 95


def synset(split: str, index: int) -> str:
    """A made-up, sortable synset per split; train names sort in the same order as their indices."""
    return f"n{'tvx'['train val test'.split().index(split)]}{index:07d}"


def colour(split: str, class_index: int, image_index: int) -> tuple[int, int, int]:
    """A distinct RGB colour per image with R != G != B so a channel swap shows."""
    s = "train val test".split().index(split)
    return (40 + 60 * s + 10 * image_index, 30 + 50 * class_index, 200 - 20 * image_index - 5 * s)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (84, 84)) -> np.ndarray:
    """uint8 (H, W, 3) of one colour; size is (height, width)."""
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (*size, 3)).copy()


def png_bytes(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()


def write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=95)


def split_arrays(split: str, size=(84, 84), splits=MINI_SPLITS):
    """(images uint8 (N, H, W, 3), class index per image) of one split, classes contiguous."""
    n_classes, per_class = splits[split]
    images = [solid(colour(split, c, i), size) for c in range(n_classes) for i in range(per_class)]
    return np.stack(images), np.repeat(np.arange(n_classes), per_class)


# --- a Python-2 cPickle writer (protocol 2) --------------------------------------------------------------

def _py2_str(data: bytes) -> bytes:
    return (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))) + data


def _py2(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, (bool, np.bool_)):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, (int, np.integer)):
        return b"J" + struct.pack("<i", int(obj))
    if isinstance(obj, str):
        return _py2_str(obj.encode("latin1"))
    if isinstance(obj, bytes):
        return _py2_str(obj)
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        dtype = obj.dtype.str  # e.g. '|u1', '<i8'
        dtype_state = (3, dtype[0], None, None, None, -1, -1, 0)
        dtype_pickle = b"cnumpy\ndtype\n" + _py2((dtype[1:], 0, 1)) + b"R" + _py2(dtype_state) + b"b"
        state = (b"(" + _py2(1) + _py2(tuple(obj.shape)) + dtype_pickle + b"\x89"
                 + _py2_str(np.ascontiguousarray(obj).tobytes()) + b"t")
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2((0,)) + _py2_str(b"b")
                + b"\x87R" + state + b"b")
    raise TypeError(f"py2 pickle writer cannot write {type(obj).__name__}")


def py2_pickle_dumps(obj) -> bytes:
    """Bytes as Python 2.7's cPickle.dump(obj, f, 2) wrote them (str = byte string, numpy 1.x arrays)."""
    return b"\x80\x02" + _py2(obj) + b"."


def write_pickle(path: Path, obj, style: str = "py2") -> None:
    """style: 'py2' (genuine Python-2 bytes), 'proto2' (Python 3 at protocol 2), or 'py3' (default protocol)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "py2":
        path.write_bytes(py2_pickle_dumps(obj))
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2 if style == "proto2" else pickle.DEFAULT_PROTOCOL))


# --- miniImageNet ------------------------------------------------------------------------------------------

def make_mini_pickle_cache(root: Path, val_name: str = "validation", style: str = "py2", bytes_keys: bool = True):
    """mini-imagenet-cache-{train,<val_name>,test}.pkl: image_data (N,84,84,3) RGB, class_dict synset -> rows."""
    root.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    for split in MINI_SPLITS:
        images, classes = split_arrays(split)
        # Rows of a class listed in source order; the classes are interleaved in the file to test regrouping.
        order = np.argsort(np.tile(np.arange(MINI_SPLITS[split][1]), MINI_SPLITS[split][0]), kind="stable")
        images, classes = images[order], classes[order]
        class_dict = {key(synset(split, c)): [int(i) for i in np.flatnonzero(classes == c)]
                      for c in range(MINI_SPLITS[split][0])}
        name = val_name if split == "val" else split
        write_pickle(root / f"mini-imagenet-cache-{name}.pkl", {key("image_data"): images, key("class_dict"): class_dict},
                     style)
    return root


def make_mini_gidaris(root: Path, style: str = "py2"):
    """miniImageNet_category_split_{train_phase_train,val,test}.pickle with global labels."""
    root.mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, file_split in (("train", "train_phase_train"), ("val", "val"), ("test", "test")):
        images, classes = split_arrays(split)
        labels = [int(c) + offset for c in classes]
        catname2label = {synset(split, c).encode(): c + offset for c in range(MINI_SPLITS[split][0])}
        write_pickle(root / f"miniImageNet_category_split_{file_split}.pickle",
                     {b"data": images, b"labels": labels, b"catname2label": catname2label}, style)
        offset += MINI_SPLITS[split][0]
    return root


def make_mini_ravi(root: Path, size=(100, 90)):
    """{train,val,test}.csv (filename,label) + images/ of JPEGs at `size` (height, width), not 84x84."""
    root.mkdir(parents=True, exist_ok=True)
    for split in MINI_SPLITS:
        n_classes, per_class = MINI_SPLITS[split]
        with open(root / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["filename", "label"])
            for c in range(n_classes):
                for i in range(per_class):
                    name = f"{synset(split, c)}{i + 1:08d}.jpg"
                    write_jpeg(root / "images" / name, solid(colour(split, c, i), size))
                    writer.writerow([name, synset(split, c)])
    return root


def make_mini_ilsvrc(root: Path, nested: bool = True, size=(120, 150)):
    """{train,val,test}.csv (class_name,image_name) + <class>/<image>.JPEG (nested) or <image>.JPEG (flat)."""
    root.mkdir(parents=True, exist_ok=True)
    for split in MINI_SPLITS:
        n_classes, per_class = MINI_SPLITS[split]
        with open(root / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["class_name", "image_name"])
            for c in range(n_classes):
                for i in range(per_class):
                    name = f"{synset(split, c)}_{1000 + i}.JPEG"
                    path = root / synset(split, c) / name if nested else root / name
                    write_jpeg(path, solid(colour(split, c, i), size))
                    writer.writerow([synset(split, c), name])
    return root


# --- tieredImageNet ----------------------------------------------------------------------------------------

TIERED_SPLITS = {"train": (4, 3), "val": (2, 3), "test": (3, 2)}  # classes, images each
TIERED_CATEGORIES = {"train": 2, "val": 1, "test": 2}  # class c is in category c % n


def tiered_split(split: str):
    """(images RGB (N,84,84,3), label_specific, label_general) with images of classes interleaved."""
    n_classes, per_class = TIERED_SPLITS[split]
    images, classes = split_arrays(split, splits=TIERED_SPLITS)
    order = np.argsort(np.tile(np.arange(per_class), n_classes), kind="stable")
    images, classes = images[order], classes[order]
    return images, classes, classes % TIERED_CATEGORIES[split]


def category_synset(split: str, g: int) -> str:
    return f"n9{'tvx'['train val test'.split().index(split)]}{g:06d}"


def ren_labels(split: str, classes: np.ndarray, general: np.ndarray) -> dict:
    return {
        b"label_specific": classes.astype(np.int64),
        b"label_general": general.astype(np.int64),
        b"label_specific_str": [synset(split, c).encode() for c in range(TIERED_SPLITS[split][0])],
        b"label_general_str": [category_synset(split, g).encode() for g in range(TIERED_CATEGORIES[split])],
    }


def make_tiered_ren(root: Path, style: str = "py2"):
    """{split}_images_png.pkl (list of 1-D uint8 PNG arrays) + {split}_labels.pkl (Ren's four keys)."""
    root.mkdir(parents=True, exist_ok=True)
    for split in TIERED_SPLITS:
        images, classes, general = tiered_split(split)
        write_pickle(root / f"{split}_images_png.pkl", [png_bytes(im) for im in images], style)
        write_pickle(root / f"{split}_labels.pkl", ren_labels(split, classes, general), style)
    return root


def make_tiered_npz(root: Path, labels: str = "metaoptnet", compressed: bool = False):
    """{split}_images.npz (key images, BGR) + {split}_labels.pkl with key labels (or Ren's keys)."""
    root.mkdir(parents=True, exist_ok=True)
    for split in TIERED_SPLITS:
        images, classes, general = tiered_split(split)
        (np.savez_compressed if compressed else np.savez)(root / f"{split}_images.npz", images=images[..., ::-1])
        content = {b"labels": classes.tolist()} if labels == "metaoptnet" else ren_labels(split, classes, general)
        write_pickle(root / f"{split}_labels.pkl", content, "proto2")
    return root


# --- image folders -----------------------------------------------------------------------------------------

def make_imagefolder(root: Path, sizes=((30, 40), (30, 40), (25, 25)), split_names=("train", "validation", "test")):
    """<root>/<split>/<class>/<i>.png: 2 classes x 3 images a split, images i=0,1,2 at sizes[i] (h, w)."""
    root.mkdir(parents=True, exist_ok=True)
    for split_name, split in zip(split_names, ("train", "val", "test")):
        for c in range(2):
            for i, size in enumerate(sizes):
                path = root / split_name / f"class{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(solid(colour(split, c, i), size)).save(path)
    return root


class Evil:
    """Pickles to a call of os.system: loading it with plain pickle would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


# --- checks shared by the format tests ---------------------------------------------------------------------

def prepare_cli(*args: str) -> int:
    """`fewshot prepare ARGS --no-progress` through the real CLI entry point."""
    from fewshot.cli import main

    return main(["prepare", *map(str, args), "--no-progress"])


def assert_one_line_error(capsys, args, *fragments: str) -> str:
    """The CLI run exits 2 with exactly one stderr line, `fewshot: error: ...`, holding every fragment."""
    capsys.readouterr()
    code = prepare_cli(*args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("fewshot: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def check_split(split, expected_split: str, splits: dict, tolerance: int = 0, names=None) -> None:
    """Classes, counts and every image's colour of a prepared split built from the fixtures above."""
    n_classes, per_class = splits[expected_split]
    names = names or [synset(expected_split, c) for c in range(n_classes)]
    assert split.class_names == names
    np.testing.assert_array_equal(split.class_counts, [per_class] * n_classes)
    assert split.images.dtype == np.uint8
    for c in range(n_classes):
        for i in range(per_class):
            image = np.asarray(split.images[split.class_offsets[c] + i], dtype=int)
            error = np.abs(image - np.array(colour(expected_split, c, i))).max()
            assert error <= tolerance, (expected_split, c, i, error)


def check_episodes_run(split, ways: int = 2, shots: int = 1, queries: int = 1) -> None:
    """EpisodeSampler draws on the prepared split and its rows land in the classes it chose."""
    from fewshot.episodes.sampler import EpisodeSampler

    batch = EpisodeSampler(split.class_counts, ways, shots, queries, seed=0).sample(20)
    support, query = batch.rows(split.class_offsets)
    np.testing.assert_array_equal(split.labels[support], np.broadcast_to(batch.classes[..., None], support.shape))
    np.testing.assert_array_equal(split.labels[query], np.broadcast_to(batch.classes[..., None], query.shape))
