"""Ragged episode files (format version 2): round trip, checksum, resolving, refusing a mismatched store."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from fewshot.cli import main
from fewshot.data.store import Store, StoreWriter
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.episodes.protocols import make_protocol_file
from fewshot.episodes.ragged import RaggedEpisodes
from fewshot.errors import FewshotError

NAMES = [f"c{i:02d}" for i in range(12)]
COUNTS = [6, 8, 5, 7, 6, 9, 12, 5, 6, 7, 8, 10]
PARENTS = ["p0"] * 6 + ["p1"] * 6


def _store(out, dataset="toy", counts=COUNTS, names=NAMES, parents=PARENTS, reverse=False) -> Store:
    """Image of (class c, rank r) has value 16 c + r (by sorted class name); `reverse` lists classes backwards."""
    order = list(range(len(names)))[::-1] if reverse else list(range(len(names)))
    labels = np.concatenate([np.full(counts[c], i) for i, c in enumerate(order)])
    values = np.concatenate([16 * c + np.arange(counts[c]) for c in order]).astype(np.uint8)
    images = np.broadcast_to(values[:, None, None, None], (len(labels), 2, 2, 1)).copy()
    with StoreWriter(out, dataset, "v1") as writer:
        writer.add_split("test", images, labels, [names[c] for c in order],
                         categories=None if parents is None else [parents[c] for c in order])
    return Store(out)


@pytest.fixture
def store(tmp_path) -> Store:
    return _store(tmp_path / "store")


def _arrays_equal(a: RaggedEpisodes, b: RaggedEpisodes) -> bool:
    return all(np.array_equal(getattr(a, n), getattr(b, n))
               for n in ("ways", "classes", "support_counts", "query_counts", "support", "query"))


def test_round_trip_keeps_every_array_and_the_meta(store, tmp_path):
    made = make_protocol_file(store.split("test"), "meta-dataset", count=40, seed=3, hierarchy="bilevel")
    assert made.ragged and made.meta["format_version"] == 2 and made.meta["layout"] == "ragged"
    made.save(tmp_path / "md.npz")
    loaded = load_episode_file(tmp_path / "md.npz")
    assert loaded.ragged and loaded.meta == made.meta and _arrays_equal(loaded.batch, made.batch)
    meta = loaded.meta
    assert (meta["ways"], meta["shots"], meta["queries"], meta["count"], meta["seed"]) == (None, None, None, 40, 3)
    assert meta["setting"] == loaded.setting == "meta-dataset-bilevel" and meta["hierarchy"] == "bilevel"
    assert meta["class_names"] == NAMES and meta["class_counts"] == COUNTS
    assert meta["sampler_config"]["max_support_set_size"] == 500
    with np.load(tmp_path / "md.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(["ways", "classes", "support_counts", "query_counts", "support",
                                             "query", "meta"])
    # Still by class name and image rank: the rows of episode 0 hold images 16 c + r.
    classes, support, _ = loaded.batch.episode(0)
    s_rows, _ = loaded.resolve(store.split("test")).rows(store.split("test").class_offsets)
    values = store.split("test").images[s_rows[: len(support[0])], 0, 0, 0]
    assert values.tolist() == (16 * classes[0] + support[0]).tolist()


def test_version_1_files_still_load_and_resolve(store, tmp_path):
    fixed = make_episode_file(store.split("test"), 3, 2, 2, 10, seed=1)
    fixed.save(tmp_path / "fixed.npz")
    loaded = load_episode_file(tmp_path / "fixed.npz")
    assert not loaded.ragged and loaded.meta["format_version"] == 1 and loaded.setting == "3w2s"
    assert "protocol" not in loaded.meta  # uniform files are exactly what they were


def test_tampering_and_unknown_versions_are_refused(store, tmp_path):
    made = make_protocol_file(store.split("test"), "meta-dataset", count=10, seed=0, hierarchy="none")
    made.save(tmp_path / "md.npz")
    with np.load(tmp_path / "md.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    tampered = dict(arrays, support=arrays["support"].copy())
    tampered["support"][0] = (tampered["support"][0] + 1) % 5
    np.savez(tmp_path / "bad.npz", **tampered)
    with pytest.raises(FewshotError, match="fails its checksum"):
        load_episode_file(tmp_path / "bad.npz")
    inconsistent = dict(arrays, ways=arrays["ways"] + 1)
    np.savez(tmp_path / "bad2.npz", **inconsistent)
    with pytest.raises(FewshotError, match="is damaged"):
        load_episode_file(tmp_path / "bad2.npz")
    future = json.loads(str(arrays["meta"]))
    future["format_version"] = 3
    np.savez(tmp_path / "v3.npz", **dict(arrays, meta=np.array(json.dumps(future))))
    with pytest.raises(FewshotError, match="format version 3"):
        load_episode_file(tmp_path / "v3.npz")


def test_resolves_by_name_on_an_equivalent_store_and_refuses_a_mismatched_one(store, tmp_path):
    made = make_protocol_file(store.split("test"), "meta-dataset", count=30, seed=2, hierarchy="none")
    made.save(tmp_path / "md.npz")
    loaded = load_episode_file(tmp_path / "md.npz")
    same = loaded.resolve(store.split("test"))
    assert _arrays_equal(same, made.batch)
    # Same classes and counts written in another order and without parents: other checksum, same images.
    other = _store(tmp_path / "other", reverse=True, parents=None).split("test")
    assert other.checksum != store.split("test").checksum
    mapped = loaded.resolve(other)
    a_support, a_query = same.rows(store.split("test").class_offsets)
    b_support, b_query = mapped.rows(other.class_offsets)
    split = store.split("test")
    assert np.array_equal(split.images[a_support], other.images[b_support])
    assert np.array_equal(split.images[a_query], other.images[b_query])
    with pytest.raises(FewshotError, match="expects 6 images of class 'c00'"):
        loaded.resolve(_store(tmp_path / "counts", counts=[7] + COUNTS[1:]).split("test"))
    with pytest.raises(FewshotError, match="made for dataset 'toy'"):
        loaded.resolve(_store(tmp_path / "ds", dataset="other").split("test"))
    with pytest.raises(FewshotError, match="lacks"):
        loaded.resolve(_store(tmp_path / "names", names=[n.upper() for n in NAMES]).split("test"))


def test_cli_makes_every_protocol(store, tmp_path, capsys):
    data = str(store.root)
    assert main(["episodes", "--data", data, "--protocol", "meta-dataset", "--count", "20",
                 "--out", str(tmp_path / "md.npz")]) == 0
    assert "meta-dataset-none episodes (5-" in capsys.readouterr().out  # toy: no hierarchy by default
    assert main(["episodes", "--data", data, "--protocol", "meta-dataset", "--hierarchy", "bilevel", "--count",
                 "20", "--out", str(tmp_path / "md2.npz")]) == 0
    assert load_episode_file(tmp_path / "md2.npz").meta["hierarchy"] == "bilevel"
    assert main(["episodes", "--data", data, "--protocol", "within-parent", "--ways", "4", "--shots", "1",
                 "--queries", "3", "--count", "15", "--out", str(tmp_path / "wp.npz")]) == 0
    wp = load_episode_file(tmp_path / "wp.npz")
    assert wp.setting == "4w1s-within-parent" and wp.meta["format_version"] == 1 and len(wp) == 15
    capsys.readouterr()
    assert main(["episodes", "--data", data, "--protocol", "within-parent", "--ways", "7", "--out",
                 str(tmp_path / "x.npz")]) == 2
    assert "no parent has 7 classes" in capsys.readouterr().err
