"""The committed fixed episode files, and episode files drawn from class names and counts alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fewshot.data.store import Store, StoreWriter
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.episodes.protocols import PROTOCOLS, class_counts_from_csv, make_episode_file_from_counts
from fewshot.errors import FewshotError

EPISODES = Path(__file__).resolve().parents[2] / "episodes"
MINI_FILE = EPISODES / "miniimagenet-ravi-test-5w1s-15q-2000.npz"


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.filename)
def test_committed_file_loads_with_its_protocol(protocol):
    f = load_episode_file(EPISODES / protocol.filename)  # verifies the file's own checksum
    assert len(f) == protocol.count
    assert f.batch.classes.shape == (protocol.count, protocol.ways)
    assert f.batch.support.shape == (protocol.count, protocol.ways, protocol.shots)
    assert f.batch.query.shape == (protocol.count, protocol.ways, protocol.queries)
    meta = f.meta
    assert (meta["dataset"], meta["split"], meta["seed"]) == (protocol.dataset, protocol.split, 0)
    assert (meta["ways"], meta["shots"], meta["queries"], meta["count"]) == (
        protocol.ways, protocol.shots, protocol.queries, protocol.count)
    assert meta["generated_by"]
    # Every episode: distinct classes, distinct images within a class, ranks inside the class.
    counts = np.asarray(meta["class_counts"])[f.batch.classes][..., None]
    ranks = np.concatenate([f.batch.support, f.batch.query], axis=2)
    assert (ranks < counts).all() and (ranks >= 0).all()
    assert all(len(set(row)) == protocol.ways for row in f.batch.classes[:50])
    assert (np.sort(ranks, axis=2)[..., 1:] != np.sort(ranks, axis=2)[..., :-1]).all()


def test_committed_class_lists_match_the_splits():
    omniglot = load_episode_file(EPISODES / PROTOCOLS[0].filename).meta
    assert len(omniglot["class_names"]) == 1692 and set(omniglot["class_counts"]) == {20}
    mini = load_episode_file(MINI_FILE).meta
    assert len(mini["class_names"]) == 20 and set(mini["class_counts"]) == {600}
    assert mini["class_names"][0] == "n01930112" and mini["store_checksum"] is None


@pytest.mark.realdata
def test_omniglot_files_resolve_on_a_real_store(shared_data, tmp_path):
    from fewshot.data.omniglot import prepare_omniglot

    if not (shared_data / "omniglot" / "images_evaluation.zip").is_file():
        pytest.skip(f"real data not found at {shared_data / 'omniglot'}: skipping")
    prepare_omniglot(shared_data / "omniglot", tmp_path / "store", splits=("test",), workers=2, progress=False)
    split = Store(tmp_path / "store").split("test")
    for protocol in PROTOCOLS[:4]:
        f = load_episode_file(EPISODES / protocol.filename)
        assert f.meta["store_checksum"] == split.checksum
        batch = f.resolve(split)
        assert np.array_equal(batch.classes, f.batch.classes)  # same store, same class order
        # Redrawing from the store gives the committed episodes (the draw is reproducible).
        assert make_episode_file(split, protocol.ways, protocol.shots, 15, protocol.count, 0).checksum == f.checksum


def test_ravi_csv_counts(shared_data):
    if not (shared_data / "splits" / "miniimagenet" / "ravi" / "test.csv").is_file():
        pytest.skip(f"real data not found at {shared_data / 'splits'}: skipping")
    names, counts = class_counts_from_csv(shared_data / "splits" / "miniimagenet" / "ravi" / "test.csv")
    assert len(names) == 20 and set(counts) == {600} and names == sorted(names)
    made = make_episode_file_from_counts("miniimagenet", "test", names, counts, 5, 1, 15, 2000, 0)
    assert made.checksum == load_episode_file(MINI_FILE).checksum


def _fake_mini_store(path: Path, names: list[str], counts: list[int]) -> Store:
    labels = np.repeat(np.arange(len(names)), counts)
    images = (np.arange(len(labels))[:, None, None, None] % 251).astype(np.uint8) * np.ones((1, 2, 2, 3), np.uint8)
    with StoreWriter(path, "miniimagenet", "fake-tiny-images") as writer:
        writer.add_split("test", images, labels, names)
    return Store(path)


def test_miniimagenet_file_resolves_on_a_store_with_the_same_classes(tmp_path):
    f = load_episode_file(MINI_FILE)
    names, counts = f.meta["class_names"], f.meta["class_counts"]
    # Classes given in reverse order: the store sorts them, the file maps by name.
    split = _fake_mini_store(tmp_path / "mini", names[::-1], counts[::-1]).split("test")
    batch = f.resolve(split)
    assert split.class_names == names
    assert np.array_equal(batch.classes, f.batch.classes)
    support_rows, query_rows = batch.rows(split.class_offsets)
    # Row r of this store belongs to class r // 600: each image lands in its episode's class.
    assert np.array_equal(support_rows // 600, np.broadcast_to(batch.classes[..., None], support_rows.shape))
    assert np.array_equal(query_rows // 600, np.broadcast_to(batch.classes[..., None], query_rows.shape))


def test_miniimagenet_file_is_refused_on_a_store_with_other_counts(tmp_path):
    f = load_episode_file(MINI_FILE)
    names, counts = f.meta["class_names"], list(f.meta["class_counts"])
    counts[3] = 599
    split = _fake_mini_store(tmp_path / "mini", names, counts).split("test")
    with pytest.raises(FewshotError, match=f"expects 600 images of class '{names[3]}' but the store has 599"):
        f.resolve(split)


def test_from_counts_equals_a_draw_on_a_store_with_those_counts(tmp_path):
    names, counts = ["b", "a", "c", "d"], [7, 5, 6, 5]
    split = _fake_mini_store(tmp_path / "s", names, counts).split("test")
    on_store = make_episode_file(split, 3, 1, 3, 40, seed=4)
    from_counts = make_episode_file_from_counts("miniimagenet", "test", names, counts, 3, 1, 3, 40, 4)
    assert from_counts.checksum == on_store.checksum
    assert from_counts.meta["class_names"] == ["a", "b", "c", "d"] and from_counts.meta["class_counts"] == [5, 7, 6, 5]
    saved = tmp_path / "e.npz"
    from_counts.save(saved)
    assert load_episode_file(saved).resolve(split).classes.tolist() == on_store.batch.classes.tolist()


def test_from_counts_rejects_mismatched_lists():
    with pytest.raises(FewshotError, match="2 class names but 3 class counts"):
        make_episode_file_from_counts("x", "test", ["a", "b"], [5, 5, 5], 2, 1, 1, 3, 0)


TIERED_FILE = EPISODES / "tieredimagenet-ren-test-5w1s-15q-2000.npz"


def test_committed_tiered_files_name_rens_test_classes_with_lower_bound_counts(shared_data):
    from fewshot.episodes.protocols import class_names_from_ren_csv

    meta = load_episode_file(TIERED_FILE).meta
    assert len(meta["class_names"]) == 160 and set(meta["class_counts"]) == {732}
    assert meta["class_counts_rule"] == "at_least"
    ren = shared_data / "splits" / "tieredimagenet" / "test.csv"
    if not ren.is_file():
        pytest.skip(f"Ren's split file not found at {ren}: skipping")
    assert meta["class_names"] == sorted(class_names_from_ren_csv(ren))


def _fake_tiered_store(path: Path, names: list[str], counts: list[int]) -> Store:
    labels = np.repeat(np.arange(len(names)), counts)
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    with StoreWriter(path, "tieredimagenet", "fake-tiny-images") as writer:
        writer.add_split("test", images, labels, names)
    return Store(path)


def test_at_least_counts_resolve_on_larger_classes_and_refuse_smaller_ones(tmp_path):
    made = make_episode_file_from_counts("tieredimagenet", "test", ["a", "b", "c"], [4, 4, 4], 2, 1, 2, 30, 0,
                                         counts_at_least=True)
    assert made.meta["class_counts_rule"] == "at_least"
    assert (np.concatenate([made.batch.support, made.batch.query], axis=2) < 4).all()
    larger = _fake_tiered_store(tmp_path / "larger", ["a", "b", "c"], [9, 4, 7]).split("test")
    assert np.array_equal(made.resolve(larger).classes, made.batch.classes)
    smaller = _fake_tiered_store(tmp_path / "smaller", ["a", "b", "c"], [9, 3, 7]).split("test")
    with pytest.raises(FewshotError, match="expects at least 4 images of class 'b' but the store has 3"):
        made.resolve(smaller)
    exact = make_episode_file_from_counts("tieredimagenet", "test", ["a", "b", "c"], [4, 4, 4], 2, 1, 2, 30, 0)
    with pytest.raises(FewshotError, match="expects 4 images of class 'a' but the store has 9"):
        exact.resolve(larger)  # without the rule, counts must be exact as before


def test_committed_lake_runs_file_is_the_runs_of_its_class_list():
    """episodes/omniglot-lake-runs-20w1s-20.npz: run r is episode r, class m of it, training then test drawing."""
    from fewshot.episodes.protocols import lake_runs_batch

    f = load_episode_file(EPISODES / "omniglot-lake-runs-20w1s-20.npz")
    assert f.meta["protocol"] == "lake-runs" and f.setting == "20w1s-lake-runs" and len(f) == 20
    names = f.meta["class_names"]
    assert names[0] == "run01/class01" and names[-1] == "run20/class20" and set(f.meta["class_counts"]) == {2}
    again = lake_runs_batch(names, f.meta["class_counts"])
    assert np.array_equal(again.classes, f.batch.classes)
    assert [names[c] for c in f.batch.classes[6]] == [f"run07/class{m:02d}" for m in range(1, 21)]
    assert (f.batch.support == 0).all() and (f.batch.query == 1).all()
