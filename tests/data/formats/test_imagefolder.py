"""Generic <split>/<class>/<image> folders: split names, the most common size, grey detection, errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fewshot.data.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import assert_one_line_error, check_episodes_run, check_split, colour, make_imagefolder, prepare_cli  # noqa: E402

SPLITS = {"train": (2, 3), "val": (2, 3), "test": (2, 3)}


def test_splits_classes_and_most_common_size(tmp_path):
    # Two of the three images of every class are 30x40, one is 25x25: the store is 30x40 and the 25x25 ones
    # are resized (a solid colour stays that colour under any filter).
    src = make_imagefolder(tmp_path / "birds", sizes=((30, 40), (25, 25), (30, 40)))
    assert prepare_cli("imagefolder", "--src", src, "--out", tmp_path / "out", "--workers", "1",
                       "--resize", "area") == 0
    store = Store(tmp_path / "out")
    assert store.dataset == "birds"
    assert store.meta["source_variant"] == "imagefolder(30x40x3,resize=area)"
    assert store.split_names == ["train", "val", "test"]  # the `validation` folder is the val split
    for name in store.split_names:
        split = store.split(name)
        assert split.image_shape == (30, 40, 3)
        check_split(split, name, SPLITS, names=["class0", "class1"])
    check_episodes_run(store.split("train"), ways=2, shots=1, queries=2)


def test_ties_go_to_the_larger_size_and_extra_splits_are_kept(tmp_path):
    src = make_imagefolder(tmp_path / "src", sizes=((20, 20), (32, 32), (30, 30)),
                           split_names=("train", "val", "zeta"))
    assert prepare_cli("imagefolder", "--src", src, "--out", tmp_path / "out", "--workers", "1") == 0
    store = Store(tmp_path / "out")
    assert store.split_names == ["train", "val", "zeta"]
    assert store.split("zeta").image_shape == (32, 32, 3)


def test_all_grey_images_are_stored_with_one_channel(tmp_path):
    for split in ("train", "test"):
        for c in range(2):
            folder = tmp_path / "src" / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((16, 16), 100 * c + 10 * i, np.uint8)).save(folder / f"{i}.png")
    assert prepare_cli("imagefolder", "--src", tmp_path / "src", "--out", tmp_path / "out", "--workers", "1") == 0
    split = Store(tmp_path / "out").split("test")
    assert split.image_shape == (16, 16, 1)
    np.testing.assert_array_equal(split.images[:, 0, 0, 0], [0, 10, 100, 110])


def test_jpeg_and_png_mixed_with_odd_extensions(tmp_path):
    folder = tmp_path / "src" / "train" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), colour("train", 0, 0), np.uint8)).save(folder / "x.JPG", quality=95)
    Image.fromarray(np.full((8, 8, 3), colour("train", 0, 1), np.uint8)).save(folder / "y.png")
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"ignored too")
    assert prepare_cli("imagefolder", "--src", tmp_path / "src", "--out", tmp_path / "out", "--workers", "1") == 0
    split = Store(tmp_path / "out").split("train")
    assert len(split) == 2
    assert np.abs(split.images[0, 4, 4].astype(int) - colour("train", 0, 0)).max() <= 6


def test_folder_without_split_and_class_levels(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "a.png")
    assert_one_line_error(capsys, ["imagefolder", "--src", src, "--out", tmp_path / "out"],
                          f"{src} holds no <split>/<class>/<image> folders", "it holds 1 images directly")


def test_class_folder_without_images(tmp_path, capsys):
    src = make_imagefolder(tmp_path / "src")
    (src / "test" / "empty").mkdir()
    assert_one_line_error(capsys, ["imagefolder", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'test' / 'empty'} holds no image files")


def test_corrupt_image_is_named(tmp_path, capsys):
    src = make_imagefolder(tmp_path / "src")
    bad = src / "train" / "class1" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert_one_line_error(capsys, ["imagefolder", "--src", src, "--out", tmp_path / "out"],
                          f"{bad}: not a readable image")


def test_parent_level_names_each_class_parent(tmp_path, capsys):
    # <split>/<parent>/<class>/<image>: classes named parent/class, the parent kept as the hierarchy.
    src = tmp_path / "glyphs"
    for split in ("train", "test"):
        for parent, classes in (("latin", ("a", "b")), ("greek", ("alpha",))):
            for name in classes:
                for i in range(2):
                    path = src / split / parent / name / f"{i}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(path)
    assert prepare_cli("imagefolder", "--src", src, "--out", tmp_path / "out", "--workers", "1",
                       "--parent-level") == 0
    capsys.readouterr()
    split = Store(tmp_path / "out").split("train")
    assert split.class_names == ["greek/alpha", "latin/a", "latin/b"]
    assert split.parents == ["greek", "latin", "latin"]
    names, index = split.hierarchy()
    assert names == ["greek", "latin"] and index.tolist() == [0, 1, 1]
    assert split.manifest["n_parents"] == 2
    # Without the flag the parent folders would be classes (holding no images): refused, one line.
    assert_one_line_error(capsys, ["imagefolder", "--src", src, "--out", tmp_path / "o2"], "holds no image files")
    assert_one_line_error(capsys, ["synthetic", "--out", tmp_path / "o3", "--parent-level"],
                          "--parent-level is for imagefolder")
