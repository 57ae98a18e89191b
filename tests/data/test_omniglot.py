"""Omniglot from the original archive layout: rotations as classes, nearest 28x28, ink = 255."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import fewshot.data.omniglot as omniglot
from fewshot.data.omniglot import prepare_omniglot, vinyals_split
from fewshot.data.store import Store
from fewshot.errors import FewshotError

# Real names from the packaged Vinyals lists: two train characters, one val, one test.
TRAIN_CHARS = ["Angelic/character01", "Angelic/character02"]
VAL_CHARS = ["Hebrew/character01"]
TEST_CHARS = ["Gurmukhi/character42"]
DRAWINGS = 3
ROTATIONS = ("rot000", "rot090", "rot180", "rot270")
NEAREST_28 = np.floor((np.arange(28) + 0.5) * 105 / 28).astype(int)  # source pixel of each output pixel


def _rectangle(char_index: int, drawing: int) -> tuple[int, int, int, int]:
    """A distinct, off-centre black rectangle (x0, y0, x1, y1) for each character and drawing."""
    return 10 + 7 * char_index, 5 + 11 * drawing, 40 + 9 * char_index, 30 + 13 * drawing


def _png(box: tuple[int, int, int, int]) -> bytes:
    image = Image.new("1", (105, 105), 1)  # white background
    ImageDraw.Draw(image).rectangle(box, fill=0)  # black ink
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _members(chars: list[str], archive: str, first_id: int) -> dict[str, bytes]:
    files = {}
    for c, char in enumerate(chars):
        char_id = first_id + c
        # Written in reverse drawing order: the reader must sort drawings by number.
        for d in reversed(range(DRAWINGS)):
            files[f"{archive}/{char}/{char_id:04d}_{d + 1:02d}.png"] = _png(_rectangle(first_id + c, d))
    return files


def _archives() -> dict[str, dict[str, bytes]]:
    return {
        "images_background": _members(TRAIN_CHARS + VAL_CHARS, "images_background", 1),
        "images_evaluation": _members(TEST_CHARS, "images_evaluation", 965),
    }


def _write_zips(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, members in _archives().items():
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
            for path, data in members.items():
                zf.writestr(path, data)
    return folder


def _write_folders(folder: Path) -> Path:
    for members in _archives().values():
        for path, data in members.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    return folder


@pytest.fixture
def small_split(monkeypatch):
    """Restrict the Vinyals lists to the few characters the small archives hold (real names, real order)."""
    real = omniglot.vinyals_split
    chosen = {"train": TRAIN_CHARS, "val": VAL_CHARS, "test": TEST_CHARS}

    def small(split: str) -> list[str]:
        if split == "trainval":
            return small("train") + small("val")
        return [n for n in real(split) if n.rsplit("/", 1)[0] in chosen[split]]

    monkeypatch.setattr(omniglot, "vinyals_split", small)
    return small


def test_packaged_vinyals_lists():
    counts = {s: len(vinyals_split(s)) for s in ("train", "val", "test", "trainval")}
    assert counts == {"train": 4112, "val": 688, "test": 1692, "trainval": 4800}
    assert vinyals_split("train")[:4] == [f"Angelic/character01/{r}" for r in ROTATIONS]
    for chars, split in ((TRAIN_CHARS, "train"), (VAL_CHARS, "val"), (TEST_CHARS, "test")):
        assert all(f"{c}/rot000" in vinyals_split(split) for c in chars)


def test_prepare_from_zips(tmp_path, small_split):
    src = _write_zips(tmp_path / "src")
    manifests = prepare_omniglot(src, tmp_path / "store", workers=1, progress=False)
    assert list(manifests) == ["train", "val", "test", "trainval"]
    store = Store(tmp_path / "store")
    assert store.dataset == "omniglot"
    train = store.split("train")
    assert train.class_names == [f"{c}/{r}" for c in TRAIN_CHARS for r in ROTATIONS]
    assert train.parents == ["Angelic"] * 8 and train.categories is None  # the alphabet, read from the name
    assert store.split("trainval").hierarchy()[0] == ["Angelic", "Hebrew"]
    assert train.class_counts.tolist() == [DRAWINGS] * 8
    assert train.image_shape == (28, 28, 1) and train.images.dtype == np.uint8
    assert store.split("val").n_classes == 4 and store.split("test").n_classes == 4
    assert store.split("trainval").n_classes == 12
    assert set(np.unique(train.images).tolist()) == {0, 255}

    for c, char in enumerate(TRAIN_CHARS):
        for d in range(DRAWINGS):
            # Rank d of the rot000 class is drawing d + 1: ink (255) exactly where the black rectangle was.
            x0, y0, x1, y1 = _rectangle(1 + c, d)
            full = np.zeros((105, 105), dtype=np.uint8)
            full[y0:y1 + 1, x0:x1 + 1] = 255
            expected = full[np.ix_(NEAREST_28, NEAREST_28)]
            upright = train.images[train.class_offsets[train.class_names.index(f"{char}/rot000")] + d, ..., 0]
            assert np.array_equal(upright, expected)
            # Each rotation class is PIL's rotation then resize of the same drawing, and equals np.rot90.
            source = Image.open(io.BytesIO(_png(_rectangle(1 + c, d))))
            for k, rot in enumerate(ROTATIONS):
                stored = train.images[train.class_offsets[train.class_names.index(f"{char}/{rot}")] + d, ..., 0]
                by_pil = np.where(np.asarray(source.rotate(90 * k).resize((28, 28))), 0, 255)
                assert np.array_equal(stored, by_pil)
                assert np.array_equal(stored, np.rot90(upright, k))


def test_extracted_folders_give_the_same_store(tmp_path, small_split):
    prepare_omniglot(_write_zips(tmp_path / "zips"), tmp_path / "a", workers=1, progress=False)
    prepare_omniglot(_write_folders(tmp_path / "folders"), tmp_path / "b", workers=1, progress=False)
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    for split in ("train", "val", "test", "trainval"):
        assert a.split(split).checksum == b.split(split).checksum


def test_prepare_only_some_splits(tmp_path, small_split):
    prepare_omniglot(_write_zips(tmp_path / "src"), tmp_path / "store", splits=("test",), workers=1, progress=False)
    store = Store(tmp_path / "store")
    assert store.split_names == ["test"]
    assert store.split("test").class_names == [f"{TEST_CHARS[0]}/{r}" for r in ROTATIONS]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_source_is_a_one_line_error(tmp_path, small_split):
    with pytest.raises(FewshotError) as missing:
        prepare_omniglot(tmp_path / "nowhere", tmp_path / "store", workers=1, progress=False)
    assert "does not exist" in _one_line(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FewshotError) as empty:
        prepare_omniglot(tmp_path / "empty", tmp_path / "store", workers=1, progress=False)
    assert "images_background.zip" in _one_line(empty)
    assert not (tmp_path / "store").exists()


def test_damaged_zip_and_missing_character_are_refused(tmp_path, small_split):
    src = _write_zips(tmp_path / "src")
    (src / "images_evaluation.zip").unlink()
    with pytest.raises(FewshotError) as missing:
        prepare_omniglot(src, tmp_path / "store", workers=1, progress=False)
    assert "Gurmukhi/character42" in _one_line(missing)
    (src / "images_evaluation.zip").write_bytes(b"not a zip")
    with pytest.raises(FewshotError) as damaged:
        prepare_omniglot(src, tmp_path / "store", workers=1, progress=False)
    assert "not a readable zip" in _one_line(damaged)
    assert not (tmp_path / "store").exists()


@pytest.fixture(scope="module")
def real_omniglot(shared_data, tmp_path_factory) -> Path:
    src = shared_data / "omniglot"
    if not (src / "images_background.zip").is_file():
        pytest.skip(f"real data not found at {src}: skipping")
    out = tmp_path_factory.mktemp("omniglot") / "store"
    prepare_omniglot(src, out, splits=("train", "val", "test"), workers=2, progress=False)
    return out


@pytest.mark.realdata
@pytest.mark.slow
def test_real_omniglot_counts_and_pixel_floor(real_omniglot):
    from fewshot.episodes.files import make_episode_file
    from fewshot.evaluate.run import evaluate_pixels

    store = Store(real_omniglot)
    for split, classes in (("train", 4112), ("val", 688), ("test", 1692)):
        s = store.split(split)
        assert s.n_classes == classes
        assert s.class_counts.min() == s.class_counts.max() == 20
        assert s.image_shape == (28, 28, 1)
    episodes = make_episode_file(store.split("test"), 5, 1, 15, 200, seed=0)
    record = evaluate_pixels(real_omniglot, [episodes], "cpu")[0]
    # The published floor measured on this data is 37.7 (1000 episodes); 200 episodes: +- about 2.5.
    assert 30.0 < record["mean"] < 45.0, record["mean"]


def test_lake_split_background_with_rotations_evaluation_upright(tmp_path, small_split):
    src = _write_zips(tmp_path / "src")
    manifests = prepare_omniglot(src, tmp_path / "store", workers=1, progress=False, lake=True)
    assert list(manifests) == ["background", "evaluation"]
    store = Store(tmp_path / "store")
    background, evaluation = store.split("background"), store.split("evaluation")
    assert background.class_names == [f"{c}/{r}" for c in sorted(TRAIN_CHARS + VAL_CHARS) for r in ROTATIONS]
    assert evaluation.class_names == [f"{TEST_CHARS[0]}/rot000"]
    assert evaluation.hierarchy()[0] == ["Gurmukhi"] and background.hierarchy()[0] == ["Angelic", "Hebrew"]
    prepare_omniglot(src, tmp_path / "v", splits=("test",), workers=1, progress=False)
    # The upright evaluation class is the Vinyals test rot000 class, image for image.
    upright = Store(tmp_path / "v").split("test")
    first = upright.class_offsets[upright.class_names.index(f"{TEST_CHARS[0]}/rot000")]
    assert np.array_equal(evaluation.images, upright.images[first:first + DRAWINGS])
