"""miniImageNet: each of the four on-disk variants prepares to the same classes, counts and pixels; bad inputs
fail through the CLI with one line."""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.registry import get_format
from fewshot.data.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import (  # noqa: E402
    JPEG_TOLERANCE, MINI_SPLITS, Evil, assert_one_line_error, check_episodes_run, check_split, make_mini_gidaris,
    make_mini_ilsvrc, make_mini_pickle_cache, make_mini_ravi, prepare_cli, write_pickle,
)


def _prepare(src: Path, out: Path, *extra: str) -> Store:
    assert prepare_cli("miniimagenet", "--src", src, "--out", out, "--workers", "1", *extra) == 0
    return Store(out)


def _check_store(store: Store, variant: str, tolerance: int = 0) -> None:
    assert store.dataset == "miniimagenet"
    assert store.meta["source_variant"].startswith(f"miniimagenet-{variant}")
    assert store.split_names == ["train", "val", "test"]
    for name in store.split_names:
        split = store.split(name)
        assert split.image_shape == (84, 84, 3)
        check_split(split, name, MINI_SPLITS, tolerance)
    check_episodes_run(store.split("train"), ways=3, shots=2, queries=2)


@pytest.mark.parametrize("style, val_name", [("py2", "validation"), ("proto2", "val"), ("py3", "validation")])
def test_pickle_cache(tmp_path, style, val_name):
    src = make_mini_pickle_cache(tmp_path / "src", val_name=val_name, style=style, bytes_keys=style != "py3")
    _check_store(_prepare(src, tmp_path / "out"), "pickle-cache")


def test_gidaris_pickles_with_global_labels(tmp_path):
    store = _prepare(make_mini_gidaris(tmp_path / "src"), tmp_path / "out")
    _check_store(store, "gidaris")  # val's labels start at 3 and test's at 5 in the files: names still match


def test_gidaris_without_catname2label_names_classes_by_index(tmp_path):
    src = make_mini_gidaris(tmp_path / "src")
    from fixtures import split_arrays

    images, classes = split_arrays("val")
    write_pickle(src / "miniImageNet_category_split_val.pickle", {b"data": images, b"labels": (classes + 3).tolist()})
    split = _prepare(src, tmp_path / "out").split("val")
    check_split(split, "val", MINI_SPLITS, names=["class0000", "class0001"])


def test_ravi_csv_jpegs_are_resized_to_84(tmp_path):
    src = make_mini_ravi(tmp_path / "src", size=(100, 90))
    _check_store(_prepare(src, tmp_path / "out", "--resize", "lanczos"), "ravi-csv", JPEG_TOLERANCE)
    assert "resize=lanczos" in Store(tmp_path / "out").meta["source_variant"]


@pytest.mark.parametrize("nested", [True, False])
def test_ilsvrc_names_csv_in_class_folders_or_flat(tmp_path, nested):
    src = make_mini_ilsvrc(tmp_path / "src", nested=nested)
    _check_store(_prepare(src, tmp_path / "out"), "ilsvrc-csv", JPEG_TOLERANCE)


def test_parallel_decode_gives_the_same_store(tmp_path):
    src = make_mini_ravi(tmp_path / "src")
    one = _prepare(src, tmp_path / "one").split("train")
    two = Store(tmp_path / "two") if prepare_cli("miniimagenet", "--src", src, "--out", tmp_path / "two",
                                                 "--workers", "2") == 0 else None
    assert two is not None and two.split("train").checksum == one.checksum


def test_every_variant_is_listed(capsys):
    from fewshot.cli import main

    assert main(["prepare", "--list"]) == 0
    out = capsys.readouterr().out
    for variant in ("pickle-cache", "gidaris", "ravi-csv", "ilsvrc-csv"):
        assert f"    {variant}: " in out
    assert "mini-imagenet-cache-{train,val|validation,test}.pkl" in out
    assert set(get_format("miniimagenet").variants) == {"pickle-cache", "gidaris", "ravi-csv", "ilsvrc-csv"}


# --- bad inputs: one line on stderr, exit 2, nothing left at --out ----------------------------------------

def test_missing_source_folder(tmp_path, capsys):
    assert_one_line_error(capsys, ["miniimagenet", "--src", tmp_path / "nope", "--out", tmp_path / "out"],
                          f"miniimagenet source folder {tmp_path / 'nope'} does not exist")


def test_folder_with_no_known_variant_says_what_it_looked_for(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("hi")
    assert_one_line_error(capsys, ["miniimagenet", "--src", tmp_path / "src", "--out", tmp_path / "out"],
                          "holds none of the miniImageNet variants", "mini-imagenet-cache-{train,val,test}.pkl",
                          "miniImageNet_category_split_", "{train,val,test}.csv")


def test_missing_split_file(tmp_path, capsys):
    src = make_mini_pickle_cache(tmp_path / "src")
    (src / "mini-imagenet-cache-test.pkl").unlink()
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / 'mini-imagenet-cache-test.pkl'} is missing")
    assert not (tmp_path / "out").exists()


def test_truncated_pickle_leaves_no_half_store(tmp_path, capsys):
    src = make_mini_pickle_cache(tmp_path / "src")
    test_file = src / "mini-imagenet-cache-test.pkl"  # read last: train and val are already written
    test_file.write_bytes(test_file.read_bytes()[:500])
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{test_file}: not a readable pickle", "truncated or corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no out, no .out.*.partial


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, capsys):
    src = make_mini_pickle_cache(tmp_path / "src")
    marker = tmp_path / "pwned"
    (src / "mini-imagenet-cache-train.pkl").write_bytes(
        pickle.dumps({"image_data": Evil(f"touch {marker}"), "class_dict": {}}, protocol=2))
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          "pickle asks for posix.system, which is not allowed in a dataset file; refusing to load it")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_label_count_differs_from_image_count(tmp_path, capsys):
    src = make_mini_pickle_cache(tmp_path / "src", style="py3", bytes_keys=False)
    path = src / "mini-imagenet-cache-train.pkl"
    data = pickle.loads(path.read_bytes())
    data["class_dict"]["nt0000000"] = data["class_dict"]["nt0000000"][:-1]
    write_pickle(path, data, "py3")
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{path}: 11 labels (from class_dict) but 12 images")


def test_gidaris_label_count_differs(tmp_path, capsys):
    src = make_mini_gidaris(tmp_path / "src")
    path = src / "miniImageNet_category_split_train_phase_train.pickle"
    data = pickle.loads(path.read_bytes(), encoding="latin1")
    data["labels"] = data["labels"][:5]
    write_pickle(path, data, "proto2")
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{path}: 5 labels (from labels) but 12 images")


def test_csv_naming_an_absent_image(tmp_path, capsys):
    src = make_mini_ravi(tmp_path / "src")
    absent = sorted((src / "images").iterdir())[-1]
    absent.unlink()
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"names {absent}, which is not there (1 of ")


@pytest.mark.parametrize("csv_name, line, absent_image", [
    ("test.csv", 11, "nx0000001/nx0000001_1004.JPEG"),
    ("train.csv", 2, "nt0000000/nt0000000_1000.JPEG"),  # the very first row: the layout comes from the next
])
def test_ilsvrc_csv_naming_an_absent_image(tmp_path, capsys, csv_name, line, absent_image):
    src = make_mini_ilsvrc(tmp_path / "src")
    (src / absent_image).unlink()
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          f"{src / csv_name}: line {line} names {src / absent_image}, which is not there "
                          "(1 of ")


def test_csv_with_an_unknown_header(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for split in ("train", "val", "test"):
        (src / f"{split}.csv").write_text("image,class\na.jpg,n1\n")
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", tmp_path / "out"],
                          "expected the header filename,label (Ravi) or class_name,image_name (easyfsl)")


def test_output_already_holding_a_store_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "out"
    first = _prepare(make_mini_gidaris(tmp_path / "gidaris"), out)
    checksum = first.split("train").checksum
    src = make_mini_pickle_cache(tmp_path / "cache")
    assert_one_line_error(capsys, ["miniimagenet", "--src", src, "--out", out],
                          f"{out} already holds a prepared store; choose another --out or pass --force")
    assert Store(out).meta["source_variant"] == "miniimagenet-gidaris"
    assert Store(out).split("train").checksum == checksum
    replaced = _prepare(src, out, "--force")
    assert replaced.meta["source_variant"] == "miniimagenet-pickle-cache"
    np.testing.assert_array_equal(replaced.split("train").images, first.split("train").images)
