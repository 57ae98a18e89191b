"""The generated stroke-glyph set: deterministic from its seed, 64/16/20 classes x 60 images by default."""
from __future__ import annotations

import numpy as np

from fewshot.data.store import Store
from fewshot.data.synthetic import SPLITS, generate, prepare_synthetic

SMALL = {"train": 3, "val": 2, "test": 2}


def _arrays(seed: int) -> list[tuple[str, np.ndarray, np.ndarray, list[str]]]:
    return list(generate(seed, images_per_class=6, splits=SMALL))


def test_same_seed_gives_identical_images():
    first, second = _arrays(3), _arrays(3)
    for (s1, im1, lab1, n1), (s2, im2, lab2, n2) in zip(first, second):
        assert s1 == s2 and n1 == n2
        assert np.array_equal(im1, im2) and np.array_equal(lab1, lab2)


def test_different_seed_gives_different_images():
    for (_, im1, _, n1), (_, im2, _, n2) in zip(_arrays(3), _arrays(4)):
        assert n1 == n2  # names depend only on the class position
        assert not np.array_equal(im1, im2)


def test_shapes_labels_and_names():
    splits = _arrays(0)
    assert [s for s, *_ in splits] == ["train", "val", "test"]
    names = [n for *_, ns in splits for n in ns]
    assert names == [f"glyph{i:03d}" for i in range(7)]  # one numbering across splits: no class is shared
    train_images, train_labels = splits[0][1], splits[0][2]
    assert train_images.shape == (18, 28, 28, 1) and train_images.dtype == np.uint8
    assert train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    # Glyphs are drawn: every image has ink (255) and background (0), and images of one class differ.
    assert all(im.max() == 255 and im.min() == 0 for im in train_images)
    assert not np.array_equal(train_images[0], train_images[1])


def test_default_split_sizes_are_64_16_20_by_60():
    assert SPLITS == {"train": 64, "val": 16, "test": 20}
    # Only the sizes of the default set: two images a class keeps this fast.
    sizes = {split: (len(names), len(images)) for split, images, _, names in generate(0, images_per_class=2)}
    assert sizes == {"train": (64, 128), "val": (16, 32), "test": (20, 40)}
    assert generate.__defaults__[1] == 60  # images_per_class


def test_prepared_store_checksum_is_deterministic(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        prepare_synthetic(tmp_path / name, seed=seed, images_per_class=4, splits=SMALL)
    a, b, c = (Store(tmp_path / n) for n in "abc")
    for split in SMALL:
        assert a.split(split).checksum == b.split(split).checksum
        assert a.split(split).checksum != c.split(split).checksum
        assert (tmp_path / "a" / split / "images.npy").read_bytes() == (tmp_path / "b" / split / "images.npy").read_bytes()
    assert a.dataset == "synthetic"
    assert a.split("train").class_counts.tolist() == [4, 4, 4]
    assert a.split("val").class_names == ["glyph003", "glyph004"]
