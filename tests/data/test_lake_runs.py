"""Lake's 20 one-shot runs: a store from all_runs.zip and the 20 fixed episodes, small zip and real zip."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fewshot.cli import main
from fewshot.data.lake_runs import read_runs
from fewshot.data.omniglot import _preprocess
from fewshot.data.store import Store
from fewshot.episodes.files import load_episode_file
from fewshot.errors import FewshotError

RUNS, WAYS = 3, 4


def _png(value: int) -> bytes:
    """A 105x105 1-bit drawing (white background) with a black bar whose position encodes `value`."""
    image = Image.new("1", (105, 105), 1)
    pixels = np.ones((105, 105), dtype=bool)
    pixels[4 * value % 100: 4 * value % 100 + 5, 10:90] = False
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _small_zip(path, swap_labels=None):
    """RUNS runs of WAYS classes in Lake's layout; the test item of class m of run r is item ((m + r) % WAYS) + 1."""
    with zipfile.ZipFile(path, "w") as zf:
        for r in range(1, RUNS + 1):
            run = f"run{r:02d}"
            lines = []
            for m in range(1, WAYS + 1):
                item = (m + r) % WAYS + 1
                zf.writestr(f"{run}/training/class{m:02d}.png", _png(10 * r + m))
                zf.writestr(f"{run}/test/item{item:02d}.png", _png(10 * r + m + 100))
                lines.append(f"{run}/test/item{item:02d}.png {run}/training/class{m:02d}.png")
            if swap_labels and r == 1:
                lines[0] = lines[0].replace("class01", "class02")
            zf.writestr(f"{run}/class_labels.txt", "\n".join(sorted(lines)) + "\n")
    return path


def test_small_zip_gives_the_runs_store_and_episodes(tmp_path, capsys):
    src = _small_zip(tmp_path / "all_runs.zip")
    assert main(["prepare", "omniglot-runs", "--src", str(tmp_path), "--out", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    split = Store(tmp_path / "runs").split("runs")
    assert split.dataset == "omniglot-lake-runs" and split.n_classes == RUNS * WAYS
    assert split.class_names[:2] == ["run01/class01", "run01/class02"] and split.parents[0] == "run01"
    assert (split.class_counts == 2).all()
    assert main(["episodes", "--data", str(tmp_path / "runs"), "--protocol", "lake-runs",
                 "--out", str(tmp_path / "lake.npz")]) == 0
    episodes = load_episode_file(tmp_path / "lake.npz")
    assert episodes.setting == f"{WAYS}w1s-lake-runs" and episodes.meta["protocol"] == "lake-runs"
    batch = episodes.batch
    assert batch.classes.shape == (RUNS, WAYS) and (batch.support == 0).all() and (batch.query == 1).all()
    support, query = batch.rows(split.class_offsets)
    for r in range(RUNS):
        for m in range(WAYS):
            # Support: the run's training drawing of class m; query: the test item labelled with it.
            assert split.class_names[batch.classes[r, m]] == f"run{r + 1:02d}/class{m + 1:02d}"
            train = _preprocess((_png(10 * (r + 1) + m + 1), (0,), "train"))[0]
            test = _preprocess((_png(10 * (r + 1) + m + 1 + 100), (0,), "test"))[0]
            assert np.array_equal(split.images[support[r, m, 0], ..., 0], train)
            assert np.array_equal(split.images[query[r, m, 0], ..., 0], test)
    # The extracted folder reads the same.
    with zipfile.ZipFile(src) as zf:
        zf.extractall(tmp_path / "extracted")
    assert [r.labels for r in read_runs(tmp_path / "extracted")] == [r.labels for r in read_runs(src)]


def test_a_class_labelled_twice_is_refused(tmp_path):
    _small_zip(tmp_path / "all_runs.zip", swap_labels=True)
    with pytest.raises(FewshotError, match="name each training class exactly once"):
        read_runs(tmp_path / "all_runs.zip")
    with pytest.raises(FewshotError, match="neither all_runs.zip"):
        read_runs(tmp_path / "nothing-here")


def _modified_hausdorff(a, b) -> float:
    """Lake's ModHausdorffDistance: the larger of the two mean nearest-point distances ((points, tree) pairs)."""
    return max(b[1].query(a[0])[0].mean(), a[1].query(b[0])[0].mean())


def _ink_points(png: bytes):
    """Lake's LoadImgAsPoints: ink pixel coordinates, centred on their mean (with a KD-tree over them)."""
    from scipy.spatial import cKDTree

    ink = ~np.asarray(Image.open(io.BytesIO(png)).convert("1"), dtype=bool)
    points = np.argwhere(ink).astype(float)
    points -= points.mean(axis=0)
    return points, cKDTree(points)


def test_real_zip_gives_20_runs_of_20_pairs_and_lakes_baseline(shared_data, tmp_path):
    """The real all_runs.zip: 20 runs x 20 (training, test) pairs; Modified Hausdorff on them errs 38.8%."""
    zip_path = shared_data / "omniglot" / "all_runs.zip"
    if not zip_path.is_file():
        pytest.skip(f"{zip_path} not found: skipping")
    runs = read_runs(zip_path)
    assert len(runs) == 20 and all(len(r.training) == 20 and len(r.test) == 20 for r in runs)
    errors = []
    for run in runs:
        classes = sorted(run.training)
        train = [_ink_points(run.training[c]) for c in classes]
        wrong = 0
        for item, label in run.labels.items():
            test = _ink_points(run.test[item])
            guess = classes[int(np.argmin([_modified_hausdorff(test, t) for t in train]))]
            wrong += guess != label
        errors.append(100.0 * wrong / len(run.labels))
    assert round(float(np.mean(errors)), 1) == 38.8  # the figure Lake's demo_classification.py prints
    assert main(["prepare", "omniglot-runs", "--src", str(zip_path), "--out", str(tmp_path / "runs"),
                 "--no-progress"]) == 0
    assert main(["episodes", "--data", str(tmp_path / "runs"), "--protocol", "lake-runs",
                 "--out", str(tmp_path / "lake.npz")]) == 0
    episodes = load_episode_file(tmp_path / "lake.npz")
    assert episodes.batch.classes.shape == (20, 20) and episodes.setting == "20w1s-lake-runs"
    split = Store(tmp_path / "runs").split("runs")
    _, query = episodes.batch.rows(split.class_offsets)
    # The query of class m of run r is the test item whose label is that class.
    run = runs[6]
    item_of = {c: i for i, c in run.labels.items()}
    expected = _preprocess((run.test[item_of["class05"]], (0,), "class05"))[0]
    assert np.array_equal(split.images[query[6, 4, 0], ..., 0], expected)
