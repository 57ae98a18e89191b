"""Lake et al.'s 20 official one-shot runs (`all_runs.zip`) as a small prepared store.

Layout of the zip (or of its extracted folder): `runNN/training/classMM.png` (one drawing of each of the
run's 20 characters), `runNN/test/itemKK.png` (20 other drawings), and `runNN/class_labels.txt`, one line a
test item: `runNN/test/itemKK.png runNN/training/classMM.png`. Each run is 20-way 1-shot within one
alphabet of the evaluation set; Lake et al. (2015) score it as the error rate over its 20 test items.

How the images become store rows: the drawings of all_runs are not in the background/evaluation stores
by name (they are evaluation drawings, but the zip names only run, class and item), so they get a store
of their own, dataset `omniglot-lake-runs`, split `runs`: one class a (run, training image), named
`runNN/classMM`, whose parent is its run; rank 0 is the training drawing, rank 1 the test item labelled
with it. 400 classes x 2 images. Preprocessing is the Omniglot store's (nearest 28x28, ink = 255), so a
network trained on an Omniglot store embeds them as it embeds its own data. `lake_runs_batch` turns the
store's classes into the 20 fixed episodes (fewshot.episodes.protocols, protocol `lake-runs`).
"""
from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewshot.errors import FewshotError

DATASET = "omniglot-lake-runs"
SPLIT = "runs"
_LABEL_LINE = re.compile(r"^(run\d+)/test/(item\d+)\.png\s+(run\d+)/training/(class\d+)\.png$")
_MEMBER = re.compile(r"(?:^|/)(run\d+)/(training|test)/((?:class|item)\d+)\.png$")
_LABELS = re.compile(r"(?:^|/)(run\d+)/class_labels\.txt$")


@dataclass
class LakeRun:
    """One run: training drawing of each class, test drawing of each item, and each item's class."""

    name: str
    training: dict[str, bytes] = field(default_factory=dict)
    test: dict[str, bytes] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # item -> class


def _files(src: Path) -> dict[str, bytes]:
    """Relative name -> bytes of every member of all_runs.zip (src: the zip, its folder, or the extracted runs)."""
    candidates = [src] if src.is_file() else [src / "all_runs.zip", src / "all_runs", src]
    for candidate in candidates:
        if candidate.is_file():
            try:
                with zipfile.ZipFile(candidate) as zf:
                    return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
            except zipfile.BadZipFile:
                raise FewshotError(f"{candidate} is not a readable zip archive; download all_runs.zip again") from None
        if candidate.is_dir() and any(candidate.glob("run*/class_labels.txt")):
            return {p.relative_to(candidate).as_posix(): p.read_bytes() for p in candidate.rglob("*") if p.is_file()}
    raise FewshotError(f"{src} holds neither all_runs.zip nor extracted runNN/ folders with class_labels.txt; "
                       "point --src at all_runs.zip (brendenlake/omniglot, python/one-shot-classification)")


def read_runs(src: str | Path) -> list[LakeRun]:
    """The runs in name order, checked: 20 training classes, 20 test items, each class labelling one item."""
    files = _files(Path(src))
    runs: dict[str, LakeRun] = defaultdict(lambda: LakeRun(""))
    for name, data in files.items():
        if m := _MEMBER.search(name):
            run = runs[m[1]]
            run.name = m[1]
            (run.training if m[2] == "training" else run.test)[m[3]] = data
        elif m := _LABELS.search(name):
            run = runs[m[1]]
            run.name = m[1]
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
                if not line.strip():
                    continue
                parsed = _LABEL_LINE.match(line.strip())
                if not parsed or parsed[1] != m[1] or parsed[3] != m[1]:
                    raise FewshotError(f"{name}: line {number} is not `{m[1]}/test/itemKK.png "
                                       f"{m[1]}/training/classMM.png`: {line.strip()!r}")
                run.labels[parsed[2]] = parsed[4]
    if not runs:
        raise FewshotError(f"{src}: no runNN/ folders found; is this Lake's all_runs.zip?")
    ordered = [runs[k] for k in sorted(runs)]
    for run in ordered:
        where = f"{src}: {run.name}"
        if not run.labels:
            raise FewshotError(f"{where} has no class_labels.txt")
        if set(run.labels) != set(run.test):
            missing = sorted(set(run.labels) ^ set(run.test))[0]
            raise FewshotError(f"{where}: test item {missing} is in class_labels.txt or test/ but not both")
        if sorted(run.labels.values()) != sorted(run.training):
            raise FewshotError(f"{where}: class_labels.txt must name each training class exactly once "
                               f"({len(set(run.labels.values()))} distinct of {len(run.training)} classes)")
    return ordered


def prepare_lake_runs(src, out, force: bool = False, progress: bool = True) -> dict:
    """Write the runs store (see the module docstring) and return its split manifest."""
    from fewshot.data.omniglot import _preprocess
    from fewshot.data.store import StoreWriter

    runs = read_runs(src)
    names, parents, images, labels = [], [], [], []
    for run in runs:
        item_of = {cls: item for item, cls in run.labels.items()}
        for cls in sorted(run.training):
            labels += [len(names)] * 2
            names.append(f"{run.name}/{cls}")
            parents.append(run.name)
            images += [_preprocess((run.training[cls], (0,), f"{src}:{run.name}/training/{cls}"))[0],
                       _preprocess((run.test[item_of[cls]], (0,), f"{src}:{run.name}/test/{item_of[cls]}"))[0]]
    with StoreWriter(out, DATASET, "lake-all-runs-zip(28x28,nearest)", force) as writer:
        writer.add_split(SPLIT, np.stack(images)[..., None], labels, names, categories=parents)
    return writer.splits
