"""Fixed episode files: round trip, checksum, tampering, resolving on the same or an equivalent store."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fewshot.data.store import Store, StoreWriter
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.errors import FewshotError

NAMES = ["cat", "dog", "eel", "fox", "gnu"]
COUNTS = [6, 8, 5, 7, 6]


def _store(out, dataset: str = "toy", counts=COUNTS, names=NAMES, offset: int = 0, variant: str = "v1") -> Store:
    """A store whose image of (class c, rank r) has the value offset + 16 c + r.

    With an offset, the images are listed interleaved (rank-major), as another source variant might: the
    store still groups them by class and keeps each class's order, so (class, rank) names the same image.
    """
    labels = np.repeat(np.arange(len(names)), counts)
    ranks = np.concatenate([np.arange(c) for c in counts])
    if offset:
        interleaved = np.lexsort((labels, ranks))
        labels, ranks = labels[interleaved], ranks[interleaved]
    values = (offset + labels * 16 + ranks).astype(np.uint8)
    images = np.broadcast_to(values[:, None, None, None], (len(labels), 3, 3, 1)).copy()
    with StoreWriter(out, dataset, variant) as writer:
        writer.add_split("test", images, labels, names)
    return Store(out)


@pytest.fixture
def store(tmp_path) -> Store:
    return _store(tmp_path / "store")


def test_save_load_round_trip(store, tmp_path):
    made = make_episode_file(store.split("test"), 3, 2, 3, 25, seed=4, generated_by="test")
    made.save(tmp_path / "e.npz")
    loaded = load_episode_file(tmp_path / "e.npz")
    assert loaded.meta == made.meta
    assert np.array_equal(loaded.batch.classes, made.batch.classes)
    assert np.array_equal(loaded.batch.support, made.batch.support)
    assert np.array_equal(loaded.batch.query, made.batch.query)
    assert len(loaded) == 25 and loaded.setting == "3w2s"
    meta = loaded.meta
    assert (meta["dataset"], meta["split"], meta["ways"], meta["shots"], meta["queries"], meta["count"],
            meta["seed"]) == ("toy", "test", 3, 2, 3, 25, 4)
    assert meta["class_names"] == NAMES and meta["class_counts"] == COUNTS
    assert meta["store_checksum"] == store.split("test").checksum
    # Loads without pickles.
    with np.load(tmp_path / "e.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "meta", "query", "support"]


def test_checksum_depends_on_arrays_only(store):
    a = make_episode_file(store.split("test"), 3, 1, 2, 10, seed=0)
    b = make_episode_file(store.split("test"), 3, 1, 2, 10, seed=0, generated_by="another command")
    c = make_episode_file(store.split("test"), 3, 1, 2, 10, seed=1)
    assert a.checksum == b.checksum != c.checksum
    assert len(a.checksum) == 64


def test_tampering_is_detected(store, tmp_path):
    path = tmp_path / "e.npz"
    make_episode_file(store.split("test"), 3, 1, 2, 10, seed=0).save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["query"] = arrays["query"].copy()
    arrays["query"][0, 0, 0] = (arrays["query"][0, 0, 0] + 1) % 5
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(FewshotError, match="fails its checksum"):
        load_episode_file(path)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FewshotError, match="does not exist"):
        load_episode_file(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(FewshotError, match="not a readable fewshot episode file"):
        load_episode_file(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", classes=np.zeros((1, 1)), support=np.zeros((1, 1, 1)),
             query=np.zeros((1, 1, 1)), meta=np.array(json.dumps({"format": "else"})))
    with pytest.raises(FewshotError, match="not a fewshot episode file"):
        load_episode_file(tmp_path / "other.npz")


def test_resolve_on_the_same_store_is_identity(store, tmp_path):
    split = store.split("test")
    made = make_episode_file(split, 4, 1, 3, 12, seed=2)
    made.save(tmp_path / "e.npz")
    batch = load_episode_file(tmp_path / "e.npz").resolve(split)
    assert np.array_equal(batch.classes, made.batch.classes)
    assert np.array_equal(batch.support, made.batch.support)


def _image_values(split, batch):
    support, query = batch.rows(split.class_offsets)
    return split.images[support][..., 0, 0, 0], split.images[query][..., 0, 0, 0]


def test_resolve_by_name_on_an_equivalent_store(store, tmp_path):
    original = store.split("test")
    made = make_episode_file(original, 3, 2, 2, 15, seed=5)
    made.save(tmp_path / "e.npz")
    # Same classes and per-class counts, prepared from another source variant (other pixels, other order).
    other = _store(tmp_path / "other", offset=100, variant="v2").split("test")
    assert other.checksum != original.checksum
    assert other.class_names == NAMES
    renamed = _store(tmp_path / "renamed", names=["z" + n for n in NAMES]).split("test")
    with pytest.raises(FewshotError, match="classes the store's test split lacks"):
        made.resolve(renamed)
    resolved = load_episode_file(tmp_path / "e.npz").resolve(other)
    # The very same images (class, rank) are addressed: only the variant's offset differs.
    for a, b in zip(_image_values(original, made.batch), _image_values(other, resolved)):
        assert np.array_equal(a.astype(int) + 100, b)


def test_resolve_maps_class_indices_when_the_store_has_more_classes(store, tmp_path):
    made = make_episode_file(store.split("test"), 3, 1, 2, 10, seed=3)
    bigger = _store(tmp_path / "bigger", names=["ant"] + NAMES, counts=[9] + COUNTS).split("test")
    resolved = made.resolve(bigger)
    assert np.array_equal(resolved.classes, made.batch.classes + 1)  # "ant" sorts first
    assert [bigger.class_names[i] for i in resolved.classes[0]] == [NAMES[i] for i in made.batch.classes[0]]


def test_resolve_refuses_different_counts_dataset_or_classes(store, tmp_path):
    made = make_episode_file(store.split("test"), 3, 1, 2, 10, seed=0)
    made.path = tmp_path / "e.npz"
    fewer = _store(tmp_path / "fewer", counts=[6, 8, 5, 7, 5]).split("test")
    with pytest.raises(FewshotError, match="expects 6 images of class 'gnu' but the store has 5"):
        made.resolve(fewer)
    other_dataset = _store(tmp_path / "other", dataset="elsewhere").split("test")
    with pytest.raises(FewshotError, match="made for dataset 'toy' but the store holds 'elsewhere'"):
        made.resolve(other_dataset)
    missing = _store(tmp_path / "missing", names=NAMES[:4], counts=COUNTS[:4]).split("test")
    with pytest.raises(FewshotError, match="e.g. 'gnu'") as error:
        made.resolve(missing)
    assert str(tmp_path / "e.npz") in str(error.value) and "\n" not in str(error.value)
