"""Embedding files: round trip, the checksum as docs/embeddings.md defines it (its numpy recipe is run here),
and every refusal: edited bytes, not an embedding file, broken rules, episodes from other classes or counts."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.store import Store
from fewshot.embeddings import build_embedding_file, embeddings_checksum, load_embedding_file
from fewshot.episodes.files import make_episode_file
from fewshot.errors import FewshotError

DOC = Path(__file__).resolve().parents[2] / "docs" / "embeddings.md"


def small_file(**changes):
    """3 classes (counts 2, 3, 1), every image a row, rows shuffled; features = 10 * class + rank."""
    labels = np.array([1, 0, 2, 1, 0, 1])
    ranks = np.array([2, 0, 0, 0, 1, 1])
    embeddings = np.stack([10.0 * labels + ranks, -ranks], axis=1)
    args = dict(embeddings=embeddings, labels=labels, ranks=ranks, dataset="toy", split="test",
                class_names=["a", "b", "c"], class_counts=[2, 3, 1], store_checksum=None,
                source={"kind": "test", "method": "toy"})
    args.update(changes)
    return build_embedding_file(**args)


def test_round_trip_keeps_rows_names_and_a_checksum_over_arrays_and_meta(tmp_path):
    file = small_file()
    path = file.save(tmp_path / "e.npz")
    back = load_embedding_file(path)
    assert back.embeddings.dtype == np.float32 and np.array_equal(back.embeddings, file.embeddings)
    assert np.array_equal(back.labels, file.labels) and np.array_equal(back.ranks, file.ranks)
    assert back.meta == file.meta and back.path == path
    # The checksum, by hand, as docs/embeddings.md states it.
    digest = hashlib.sha256()
    digest.update(file.embeddings.astype("<f4").tobytes() + b"6,2")
    digest.update(file.labels.astype("<i4").tobytes() + b"6")
    digest.update(file.ranks.astype("<i4").tobytes() + b"6")
    body = {k: v for k, v in file.meta.items() if k != "checksum"}
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    assert back.checksum == digest.hexdigest()
    # Store rows are offset[class] + rank: class b starts at row 2, so row 4 is b's rank 2 (feature 12).
    split = back.split("test")
    assert split.class_offsets.tolist() == [0, 2, 5]
    assert split.embeddings_of(np.array([4, 0, 5])).tolist() == [[12.0, -2.0], [0.0, 0.0], [20.0, 0.0]]


def test_the_docs_numpy_recipe_writes_a_file_fewshot_reads(tiny_store, tmp_path):
    code = re.search(r"## Writing one with numpy only.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    model = lambda images: images.reshape(len(images), -1)[:, :16].astype(np.float32)  # noqa: E731
    parts = namespace["embed_store_split"](str(tiny_store), "test", model, batch=7)
    namespace["write_embedding_file"](tmp_path / "mine.npz", *parts, source={"kind": "pixels16", "method": "p16"})
    file = load_embedding_file(tmp_path / "mine.npz")
    split = Store(tiny_store).split("test")
    assert file.meta["store_checksum"] == split.checksum and file.meta["class_names"] == split.class_names
    assert np.array_equal(file.embeddings, split.images.reshape(len(split), -1)[:, :16].astype(np.float32))
    assert file.checksum == embeddings_checksum(file.embeddings, file.labels, file.ranks, file.meta)


def test_edited_bytes_fail_the_checksum(tmp_path):
    path = small_file().save(tmp_path / "e.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["embeddings"][3, 1] += 1.0  # one value changed, the meta (and its checksum) kept
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(FewshotError, match=r"edited\.npz fails its checksum; it was modified or damaged"):
        load_embedding_file(tmp_path / "edited.npz")
    meta = json.loads(str(arrays["meta"]))
    meta["source"]["method"] = "other"  # the meta is covered too
    np.savez(tmp_path / "meta.npz", **{**arrays, "embeddings": np.load(path)["embeddings"],
                                        "meta": np.array(json.dumps(meta))})
    with pytest.raises(FewshotError, match="fails its checksum"):
        load_embedding_file(tmp_path / "meta.npz")
    raw = bytearray(path.read_bytes())  # a flipped byte in the archive: unreadable or a checksum failure
    raw[len(raw) // 3] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    with pytest.raises(FewshotError, match=r"flipped\.npz (is not a readable|fails its checksum)"):
        load_embedding_file(tmp_path / "flipped.npz")


def test_files_that_are_not_embedding_files_are_refused(tiny_store, tmp_path):
    episodes = make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 5, seed=0)
    episodes.save(tmp_path / "episodes.npz")
    with pytest.raises(FewshotError, match=r"is not a fewshot embedding file \(it has no 'embeddings' array"):
        load_embedding_file(tmp_path / "episodes.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(FewshotError, match="is not a readable fewshot embedding file"):
        load_embedding_file(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(FewshotError, match="is not a readable fewshot embedding file"):
        load_embedding_file(tmp_path / "one.npy")
    np.savez(tmp_path / "other.npz", embeddings=np.zeros((1, 1)), labels=np.zeros(1), ranks=np.zeros(1),
             meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(FewshotError, match="is not a fewshot embedding file .its meta has no format"):
        load_embedding_file(tmp_path / "other.npz")
    with pytest.raises(FewshotError, match="does not exist; export one with `fewshot embed`"):
        load_embedding_file(tmp_path / "absent.npz")


@pytest.mark.parametrize("changes,message", [
    ({"labels": np.array([1, 0, 3, 1, 0, 1])}, r"a label is outside 0\.\.2"),
    ({"ranks": np.array([3, 0, 0, 0, 1, 1])}, r"row 0 has rank 3 but class 'b' has 3 images"),
    ({"ranks": np.array([2, 0, 0, 0, 0, 1])}, r"some \(class, rank\) pair has more than one row"),
    ({"embeddings": np.array([[0, 1], [2, np.nan], [0, 0], [0, 0], [0, 0], [0, 0]])}, r"row 1 holds a non-finite"),
    ({"class_names": ["a", "a", "c"]}, "class_names repeat a name"),
    ({"class_counts": [2, 3]}, "equally long lists"),
    ({"labels": np.array([1, 0, 2])}, r"must each have one entry a row \(6\)"),
])
def test_files_breaking_the_rules_are_refused(changes, message):
    with pytest.raises(FewshotError, match=message):
        small_file(**changes)


def test_episodes_of_other_classes_counts_or_splits_are_refused(tmp_path):
    file = small_file()
    file.save(tmp_path / "e.npz")
    good = {"dataset": "toy", "split": "test", "class_names": ["a", "b"], "class_counts": [2, 3],
            "store_checksum": "s"}
    file.check_episodes(good, "ep.npz")  # a subset of the classes is fine
    cases = [
        ({"class_names": ["a", "z"]}, r"embedding file .*e\.npz lacks 1 classes that episode file ep\.npz uses "
                                      r"\(e\.g\. 'z'\)"),
        ({"class_counts": [2, 4]}, r"says class 'b' has 3 images but episode file ep\.npz expects 4; they were "
                                   "made from different stores"),
        ({"split": "val"}, r"is for split 'test' but episode file ep\.npz is for 'val'"),
        ({"dataset": "omniglot"}, r"is for dataset 'toy' but episode file ep\.npz is for 'omniglot'"),
    ]
    for change, message in cases:
        with pytest.raises(FewshotError, match=message):
            file.check_episodes({**good, **change}, "ep.npz")
    claims = small_file(store_checksum="s")  # claims the episodes' store, yet lists classes it lacks
    with pytest.raises(FewshotError, match="names the store of episode file ep.npz but lists other classes"):
        claims.check_episodes(good, "ep.npz")


def test_a_row_the_episodes_need_but_the_file_lacks_is_named():
    part = small_file(embeddings=np.zeros((5, 2)), labels=np.array([1, 0, 2, 1, 0]),
                      ranks=np.array([2, 0, 0, 0, 1]))  # b's rank 1 (store row 3) is left out
    with pytest.raises(FewshotError, match="has no row for image rank 1 of class 'b', which the episodes use"):
        part.split("test").embeddings_of(np.array([0, 3]))
