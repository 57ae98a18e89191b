"""The prepared store: round trip, canonical order, checksums, verify, atomic and refusing writes, CLI."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fewshot.cli import main
from fewshot.data.store import Store, StoreWriter, sha256_file
from fewshot.errors import FewshotError


def _images(n: int, shape=(4, 5, 1)) -> np.ndarray:
    """Image i is filled with the value i, so every image can be traced back to its source index."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, *shape)).copy()


def _write_unsorted(out, force: bool = False):
    # Class names given out of order; labels interleaved in source order.
    names = ["zebra", "apple", "mango"]
    labels = np.array([0, 1, 2, 1, 0, 2, 1, 0, 0])
    with StoreWriter(out, "toy", "toy-v1", force=force) as writer:
        writer.add_split("train", _images(len(labels)), labels, names, categories=["animal", "fruit", "fruit"])
        writer.add_split("test", _images(4), [0, 0, 1, 1], ["b", "a"])
    return names, labels


def test_round_trip_sorts_classes_and_keeps_source_order_within_class(tmp_path):
    _write_unsorted(tmp_path / "store")
    store = Store(tmp_path / "store")
    assert store.dataset == "toy" and store.split_names == ["train", "test"]
    train = store.split("train")
    assert train.class_names == ["apple", "mango", "zebra"]
    assert train.categories == ["fruit", "fruit", "animal"]
    # apple = source 1, 3, 6; mango = 2, 5; zebra = 0, 4, 7, 8 (source order kept within a class).
    assert train.images[:, 0, 0, 0].tolist() == [1, 3, 6, 2, 5, 0, 4, 7, 8]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert train.labels.dtype == np.int32
    assert train.class_counts.tolist() == [3, 2, 4]
    assert train.class_offsets.tolist() == [0, 3, 5]
    assert train.image_shape == (4, 5, 1)
    assert isinstance(train.images, np.memmap)
    test = store.split("test")
    assert test.class_names == ["a", "b"] and test.categories is None
    assert test.images[:, 0, 0, 0].tolist() == [2, 3, 0, 1]


def test_split_is_a_torch_dataset(tmp_path):
    _write_unsorted(tmp_path / "store")
    train = Store(tmp_path / "store").split("train")
    image, label = train[3]
    assert len(train) == 9
    assert tuple(image.shape) == (1, 4, 5)
    assert image.dtype.is_floating_point and float(image.max()) == pytest.approx(2 / 255)
    assert label == 1


def test_manifest_checksums_match_files(tmp_path):
    _write_unsorted(tmp_path / "store")
    split = Store(tmp_path / "store").split("train")
    manifest = json.loads((tmp_path / "store" / "train" / "manifest.json").read_text())
    for name in ("images.npy", "labels.npy", "classes.json"):
        expected = hashlib.sha256((tmp_path / "store" / "train" / name).read_bytes()).hexdigest()
        assert manifest["sha256"][name] == expected == sha256_file(tmp_path / "store" / "train" / name)
    joined = "".join(f"{n}:{manifest['sha256'][n]};" for n in ("images.npy", "labels.npy", "classes.json"))
    assert split.checksum == hashlib.sha256(joined.encode()).hexdigest()
    assert manifest["n_images"] == 9 and manifest["n_classes"] == 3
    assert manifest["class_counts_min"] == 2 and manifest["class_counts_max"] == 4
    assert split.verify() == []


def test_same_content_gives_same_checksum(tmp_path):
    _write_unsorted(tmp_path / "a")
    _write_unsorted(tmp_path / "b")
    assert Store(tmp_path / "a").split("train").checksum == Store(tmp_path / "b").split("train").checksum
    assert Store(tmp_path / "a").split("train").checksum != Store(tmp_path / "a").split("test").checksum


def test_verify_detects_a_flipped_byte_and_cli_exits_2(tmp_path, capsys):
    _write_unsorted(tmp_path / "store")
    assert main(["verify", str(tmp_path / "store")]) == 0
    assert "all 2 splits match" in capsys.readouterr().out
    images = tmp_path / "store" / "train" / "images.npy"
    data = bytearray(images.read_bytes())
    data[-1] ^= 0xFF  # the last pixel: the header still parses, only the content differs
    images.write_bytes(bytes(data))
    assert Store(tmp_path / "store").verify() == {"train": ["images.npy"], "test": []}
    assert main(["verify", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot: error: ") and err.count("\n") == 1
    assert "images.npy" in err and "prepare it again" in err


def test_exception_inside_writer_leaves_no_output(tmp_path):
    out = tmp_path / "store"
    with pytest.raises(RuntimeError, match="interrupted"):
        with StoreWriter(out, "toy", "toy-v1") as writer:
            writer.add_split("train", _images(3), [0, 1, 1], ["a", "b"])
            raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind either


def test_refuses_non_empty_output_without_force(tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FewshotError, match="--force"):
        _write_unsorted(out)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_refuses_a_file_as_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FewshotError, match="not a folder"):
        _write_unsorted(tmp_path / "file")


def test_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "store").mkdir()
    _write_unsorted(tmp_path / "store")
    assert Store(tmp_path / "store").split_names == ["train", "test"]


def test_force_replaces_an_existing_store(tmp_path):
    out = tmp_path / "store"
    with StoreWriter(out, "old", "v0") as writer:
        writer.add_split("val", _images(2), [0, 1], ["x", "y"])
    with pytest.raises(FewshotError, match="prepared store"):
        _write_unsorted(out)
    _write_unsorted(out, force=True)
    store = Store(out)
    assert store.dataset == "toy" and store.split_names == ["train", "test"]
    assert not (out / "val").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(FewshotError, match="not unique"):
        with StoreWriter(tmp_path / "a", "toy", "v") as writer:
            writer.add_split("train", _images(2), [0, 1], ["x", "x"])
    with pytest.raises(FewshotError, match="outside"):
        with StoreWriter(tmp_path / "b", "toy", "v") as writer:
            writer.add_split("train", _images(2), [0, 2], ["x", "y"])
    with pytest.raises(FewshotError, match="never written"):
        with StoreWriter(tmp_path / "c", "toy", "v") as writer:
            sink = writer.split_sink("train", [0, 1, 1], ["x", "y"], (4, 5, 1))
            sink.put([0, 2], _images(2))
            writer.finish_split("train", sink)
    assert list(tmp_path.iterdir()) == []


def test_streaming_sink_in_any_order(tmp_path):
    labels = [1, 0, 1, 0]
    with StoreWriter(tmp_path / "s", "toy", "v") as writer:
        sink = writer.split_sink("train", labels, ["b", "a"], (4, 5, 1))
        sink.put([3, 1], _images(4)[[3, 1]])
        sink.put([2, 0], _images(4)[[2, 0]])
        writer.finish_split("train", sink)
    split = Store(tmp_path / "s").split("train")
    assert split.class_names == ["a", "b"]
    assert split.images[:, 0, 0, 0].tolist() == [0, 2, 1, 3]


def test_opening_errors_are_one_line(tmp_path):
    with pytest.raises(FewshotError, match="does not exist"):
        Store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FewshotError, match="no store.json"):
        Store(tmp_path / "empty")
    _write_unsorted(tmp_path / "store")
    with pytest.raises(FewshotError, match="has no split 'val'"):
        Store(tmp_path / "store").split("val")


def test_cli_info_prints_every_split(tmp_path, capsys):
    _write_unsorted(tmp_path / "store")
    assert main(["info", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "dataset toy, source toy-v1" in out
    assert "train: 9 images, 3 classes, 2 categories, 2-4 a class, shape (4, 5, 1)" in out
    assert "test: 4 images, 2 classes, 2-2 a class" in out


def _rss_file_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status")


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MADV_DONTNEED"), reason="needs madvise (Linux)")
def test_mapped_reader_copies_rows_and_gives_pages_back(tmp_path):
    """Reading 192 MiB of a mapped split keeps RSS bounded by the release budget, and the data stays right."""
    from fewshot.data.store import MappedReader

    n, shape = 3072, (64, 64, 16)  # 64 KiB an image, 192 MiB in all
    path = tmp_path / "images.npy"
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *shape))
    written[:] = (np.arange(n) % 251).astype(np.uint8)[:, None, None, None]
    written.flush()
    del written
    rows = np.random.default_rng(0).permutation(n)

    images = np.load(path, mmap_mode="r")
    reader = MappedReader(images, release_every=4 << 20)
    before = _rss_file_mib()
    peak = 0.0
    for start in range(0, n, 32):
        got = reader.take(rows[start:start + 32])
        np.testing.assert_array_equal(got[:, 0, 0, 0], (rows[start:start + 32] % 251).astype(np.uint8))
        peak = max(peak, _rss_file_mib() - before)
    assert reader.releases == 48  # 192 MiB read, a release every 4 MiB
    # The 4 MiB budget plus what the kernel maps around each fault (whole large folios: about 40 MiB measured
    # here, whatever the file size); the page-cache copy of the file is the kernel's, not the process's.
    assert peak < 96

    images = np.load(path, mmap_mode="r")
    keeping = MappedReader(images, release_every=1 << 40)
    before = _rss_file_mib()
    for start in range(0, n, 32):
        keeping.take(rows[start:start + 32])
    assert keeping.releases == 0 and _rss_file_mib() - before > 180  # without releases all 192 MiB stay mapped


def test_mapped_reader_reads_plain_arrays_and_refuses_rows_out_of_range():
    from fewshot.data.store import MappedReader

    images = _images(10)
    assert MappedReader(images).release_every == 0  # small splits stay mapped whole by default
    reader = MappedReader(images, release_every=1)
    np.testing.assert_array_equal(reader.take(np.array([3, 0, 9]))[:, 0, 0, 0], [3, 0, 9])
    assert reader.releases == 0  # nothing mapped to give back
    with pytest.raises(IndexError, match="row 10 is outside 0..9"):
        reader.take(np.array([1, 10]))
    with pytest.raises(IndexError, match="row -1"):
        reader.take(np.array([-1]))


def test_hierarchy_and_info_line(tmp_path, capsys):
    _write_unsorted(tmp_path / "store")
    store = Store(tmp_path / "store")
    train, test = store.split("train"), store.split("test")
    assert train.parents == ["fruit", "fruit", "animal"]  # apple, mango, zebra
    names, index = train.hierarchy()
    assert names == ["animal", "fruit"] and index.tolist() == [1, 1, 0]
    assert train.manifest["n_parents"] == 2
    assert test.hierarchy() is None and test.manifest["n_parents"] is None
    assert main(["info", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "hierarchy: 2 parents, 1-2 classes each: animal (1), fruit (2)" in out
    assert "hierarchy: none (no class names a parent)" in out


def test_a_store_written_before_parents_still_opens(tmp_path):
    """Older stores: classes.json without `categories`, manifest without `n_parents`."""
    _write_unsorted(tmp_path / "store")
    folder = tmp_path / "store" / "train"
    (folder / "classes.json").write_text(json.dumps({"names": ["apple", "mango", "zebra"]}))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["n_parents"]
    manifest["sha256"]["classes.json"] = sha256_file(folder / "classes.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    train = Store(tmp_path / "store").split("train")
    assert train.class_names == ["apple", "mango", "zebra"] and train.hierarchy() is None
