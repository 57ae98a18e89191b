"""tieredImageNet: Ren's PNG pickles and the BGR npz copy prepare to RGB classes with their categories; bad
inputs fail through the CLI with one line."""
from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import (  # noqa: E402
    TIERED_CATEGORIES, TIERED_SPLITS, assert_one_line_error, category_synset, check_episodes_run, check_split,
    make_tiered_npz, make_tiered_ren, png_bytes, prepare_cli, solid, write_pickle,
)


def _prepare(src: Path, out: Path, *extra: str) -> Store:
    assert prepare_cli("tieredimagenet", "--src", src, "--out", out, "--workers", "1", *extra) == 0
    return Store(out)


def _expected_categories(split: str) -> list[str]:
    return [category_synset(split, c % TIERED_CATEGORIES[split]) for c in range(TIERED_SPLITS[split][0])]


def _check_store(store: Store, variant: str, with_names: bool = True, with_categories: bool = True) -> None:
    assert store.dataset == "tieredimagenet"
    assert store.meta["source_variant"].startswith(f"tieredimagenet-{variant}")
    assert store.split_names == ["train", "val", "test"]
    for name in store.split_names:
        split = store.split(name)
        names = None if with_names else [f"class{c:04d}" for c in range(TIERED_SPLITS[name][0])]
        check_split(split, name, TIERED_SPLITS, tolerance=0, names=names)  # PNG and npz are lossless: exact RGB
        assert split.categories == (_expected_categories(name) if with_categories else None)
    check_episodes_run(store.split("train"), ways=3, shots=1, queries=2)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ren_png_pickles_in_the_tiered_imagenet_subfolder(tmp_path, workers):
    make_tiered_ren(tmp_path / "src" / "tiered-imagenet", style="py2")
    store = _prepare(tmp_path / "src", tmp_path / "out", "--workers", workers)
    _check_store(store, "ren-png")


def test_ren_png_pickles_written_by_python3(tmp_path):
    _check_store(_prepare(make_tiered_ren(tmp_path / "src", style="proto2"), tmp_path / "out"), "ren-png")


@pytest.mark.parametrize("compressed", [False, True])
def test_bgr_npz_with_metaoptnet_labels_is_stored_as_rgb(tmp_path, compressed):
    src = make_tiered_npz(tmp_path / "src", labels="metaoptnet", compressed=compressed)
    _check_store(_prepare(src, tmp_path / "out"), "npz", with_names=False, with_categories=False)


def test_npz_with_ren_labels_keeps_names_and_categories(tmp_path):
    _check_store(_prepare(make_tiered_npz(tmp_path / "src", labels="ren"), tmp_path / "out"), "npz")


def test_npz_is_read_in_chunks(tmp_path, monkeypatch):
    import fewshot.data.formats.tieredimagenet as tiered

    monkeypatch.setattr(tiered, "NPZ_CHUNK", 4)  # 12 train images: chunks of 4, 4, 4; 6 val: 4, 2
    _check_store(_prepare(make_tiered_npz(tmp_path / "src", labels="ren"), tmp_path / "out"), "npz")


def test_every_variant_is_listed(capsys):
    from fewshot.cli import main

    assert main(["prepare", "--list"]) == 0
    out = capsys.readouterr().out
    assert "    ren-png: {train,val,test}_images_png.pkl" in out and "    npz: {train,val,test}_images.npz" in out


# --- bad inputs ---------------------------------------------------------------------------------------------

def test_folder_with_no_known_variant(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    assert_one_line_error(capsys, ["tieredimagenet", "--src", tmp_path / "src", "--out", tmp_path / "out"],
                          "holds none of the tieredImageNet variants", "{train,val,test}_images_png.pkl",
                          "{train,val,test}_images.npz")


def test_missing_labels_file(tmp_path, capsys):
    src = make_tiered_ren(tmp_path / "src")
    (src / "val_labels.pkl").unlink()
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'val_labels.pkl'} is missing: the ren-png copy of tieredImageNet needs")
    assert not (tmp_path / "out").exists()


def test_label_count_differs_from_png_count(tmp_path, capsys):
    src = make_tiered_ren(tmp_path / "src", style="proto2")
    images = pickle.loads((src / "test_images_png.pkl").read_bytes())
    write_pickle(src / "test_images_png.pkl", images[:-1], "proto2")
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'test_labels.pkl'}: 6 labels (from labels for test_images_png.pkl) but 5 images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # train and val were written, then discarded


def test_label_count_differs_from_npz_count(tmp_path, capsys):
    src = make_tiered_npz(tmp_path / "src")
    write_pickle(src / "val_labels.pkl", {"labels": [0, 1]}, "py3")
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'val_labels.pkl'}: 2 labels (from `labels`) but 6 images")


def test_labels_pickle_without_label_keys(tmp_path, capsys):
    src = make_tiered_npz(tmp_path / "src")
    write_pickle(src / "train_labels.pkl", {"targets": [0]}, "py3")
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          "expected key label_specific (Ren) or labels (MetaOptNet); found targets")


def test_corrupt_png_names_the_pickle_and_the_image(tmp_path, capsys):
    src = make_tiered_ren(tmp_path / "src", style="proto2")
    images = pickle.loads((src / "val_images_png.pkl").read_bytes())
    images[4] = images[4][:60]
    write_pickle(src / "val_images_png.pkl", images, "proto2")
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'val_images_png.pkl'} image 4: not a readable image")


def test_truncated_npz(tmp_path, capsys):
    src = make_tiered_npz(tmp_path / "src")
    path = src / "train_images.npz"
    path.write_bytes(path.read_bytes()[:5000])
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{path}: not a readable npz", "truncated or corrupt")


def test_npz_whose_images_member_is_short(tmp_path, capsys):
    src = make_tiered_npz(tmp_path / "src")
    path = src / "val_images.npz"
    with zipfile.ZipFile(path) as zf:
        member = zf.read("images.npy")
    with zipfile.ZipFile(path, "w") as zf:  # a valid zip whose array stops after 2 of 6 images
        zf.writestr("images.npy", member[: len(member) - 4 * 84 * 84 * 3])
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{path}: the images member ends after 2 of 6 images; the file is truncated")


def test_npz_without_images_key(tmp_path, capsys):
    src = make_tiered_npz(tmp_path / "src")
    np.savez(src / "test_images.npz", data=np.zeros((6, 84, 84, 3), np.uint8))
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'test_images.npz'}: expected the key images, found data")


def test_forbidden_global_in_the_png_list(tmp_path, capsys):
    src = make_tiered_ren(tmp_path / "src", style="proto2")
    marker = tmp_path / "pwned"
    from fixtures import Evil

    write_pickle(src / "train_images_png.pkl", [png_bytes(solid((1, 2, 3))), Evil(f"touch {marker}")], "proto2")
    assert_one_line_error(capsys, ["tieredimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'train_images_png.pkl'}: pickle asks for posix.system")
    assert not marker.exists()
