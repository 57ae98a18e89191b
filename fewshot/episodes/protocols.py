"""The fixed test protocols the project ships episode files for, and episode files drawn from class counts.

An episode file names images by (class name, rank within class), so it needs only the class names and
the per-class image counts of the split, not the images: a miniImageNet file can be made from the Ravi
CSV alone and then resolves on any prepared miniImageNet store whose test classes and counts agree.
Class names are sorted first, as the store sorts them, so the same seed draws the same episodes as
`make_episode_file` on a store with those classes.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot.episodes.files import EpisodeFile, build_episode_file
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.errors import FewshotError


@dataclass(frozen=True)
class Protocol:
    """One fixed test episode set: which dataset split, and how the episodes are drawn."""

    dataset: str
    split_variant: str  # whose class split: "vinyals" (Omniglot), "ravi" (miniImageNet), "ren" (tieredImageNet)
    split: str
    ways: int
    shots: int
    queries: int
    count: int
    seed: int = 0

    @property
    def setting(self) -> str:
        return f"{self.ways}w{self.shots}s"

    @property
    def filename(self) -> str:
        return (f"{self.dataset}-{self.split_variant}-{self.split}-{self.setting}-{self.queries}q-"
                f"{self.count}.npz")


# The sets in the top-level episodes/ folder (see episodes/README.md): 15 queries a class, seed 0.
PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("omniglot", "vinyals", "test", 5, 1, 15, 1000),
    Protocol("omniglot", "vinyals", "test", 5, 5, 15, 1000),
    Protocol("omniglot", "vinyals", "test", 20, 1, 15, 1000),
    Protocol("omniglot", "vinyals", "test", 20, 5, 15, 1000),
    Protocol("miniimagenet", "ravi", "test", 5, 1, 15, 2000),
    Protocol("miniimagenet", "ravi", "test", 5, 5, 15, 2000),
    Protocol("tieredimagenet", "ren", "test", 5, 1, 15, 2000),
    Protocol("tieredimagenet", "ren", "test", 5, 5, 15, 2000),
)

# tieredImageNet's per-class image counts are not in Ren's split files; its classes are ILSVRC-2012 training
# classes, each with 732 to 1,300 images, so its files draw from the first 732 images of each class.
TIERED_MIN_IMAGES = 732


def class_names_from_ren_csv(path: str | os.PathLike) -> list[str]:
    """Class synsets of Ren et al.'s tieredImageNet split CSV (no header; rows `synset,category_synset`)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            names = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip()]
    except FileNotFoundError:
        raise FewshotError(f"split CSV {path} does not exist") from None
    if not names or not all(n.startswith("n") and n[1:].isdigit() for n in names):
        raise FewshotError(f"{path} is not Ren's tieredImageNet split CSV (rows synset,category_synset)")
    return names


def make_episode_file_from_counts(dataset: str, split: str, class_names: list[str], class_counts: list[int],
                                  ways: int, shots: int, queries: int, count: int, seed: int,
                                  store_checksum: str | None = None, generated_by: str = "",
                                  generated_from: str = "", counts_at_least: bool = False) -> EpisodeFile:
    """Draw `count` episodes from a split described only by its class names and per-class image counts.

    `counts_at_least`: the counts are lower bounds, not exact (the file then resolves on any store whose classes
    hold at least that many images; its ranks all fall below the bound).
    """
    names = [str(n) for n in class_names]
    if len(names) != len(class_counts):
        raise FewshotError(f"{len(names)} class names but {len(class_counts)} class counts; give one count a class")
    if len(set(names)) != len(names):
        raise FewshotError(f"class names of {dataset}/{split} are not unique")
    order = sorted(range(len(names)), key=lambda i: names[i])
    names = [names[i] for i in order]
    counts = np.asarray([int(class_counts[i]) for i in order], dtype=np.int64)
    extra = {"class_counts_rule": "at_least"} if counts_at_least else {}
    return build_episode_file(dataset, split, names, counts, ways, shots, queries, count, seed, store_checksum,
                              generated_by, generated_from=generated_from
                              or "class names and per-class image counts (no images)", **extra)


def class_counts_from_csv(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Class names and image counts of a Ravi-style split CSV (`filename,label`, one row an image)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "label" not in reader.fieldnames:
                raise FewshotError(f"{path} has no 'label' column; expected a Ravi split CSV (filename,label)")
            counts = Counter(row["label"] for row in reader)
    except FileNotFoundError:
        raise FewshotError(f"split CSV {path} does not exist") from None
    if not counts:
        raise FewshotError(f"split CSV {path} lists no images")
    names = sorted(counts)
    return names, [counts[n] for n in names]


# --- protocols drawn from a prepared split: `fewshot episodes --protocol ...` --------------------------------

SAMPLING_PROTOCOLS = ("fixed", "within-parent", "meta-dataset", "lake-runs")


def lake_runs_batch(class_names: list[str], class_counts) -> EpisodeBatch:
    """Lake's runs as 20-way 1-shot 1-query episodes over a runs store (fewshot.data.lake_runs).

    Episode r holds the classes `runRR/classMM` in name order; each class's support is its training
    drawing (rank 0), its query the test item labelled with it (rank 1)."""
    runs: dict[str, list[int]] = {}
    for index, name in enumerate(class_names):
        run, _, cls = str(name).partition("/")
        if not run.startswith("run") or not cls.startswith("class"):
            raise FewshotError(f"class {name!r} is not runNN/classMM; lake-runs episodes need a store made by "
                               "`fewshot prepare omniglot-runs`")
        runs.setdefault(run, []).append(index)
    sizes = {len(v) for v in runs.values()}
    if len(sizes) != 1:
        raise FewshotError(f"the runs hold different numbers of classes ({sorted(sizes)}); prepare the store again")
    if (np.asarray(class_counts) != 2).any():
        raise FewshotError("every class of a runs store has 2 images (training drawing, test item); this one does not")
    classes = np.array([runs[r] for r in sorted(runs)], dtype=np.int32)
    return EpisodeBatch(classes, np.zeros((*classes.shape, 1), np.int32), np.ones((*classes.shape, 1), np.int32))


def make_protocol_file(split, protocol: str, count: int = 1000, seed: int = 0, ways: int = 5, shots: int = 1,
                       queries: int = 15, hierarchy: str = "auto", generated_by: str = "") -> EpisodeFile:
    """An episode file of `protocol` drawn from a prepared split (a fewshot.data.store.StoreSplit).

    fixed: uniform N-way K-shot Q-query (as before, same files); within-parent: the same with every class
    of an episode under one parent; meta-dataset: Meta-Dataset's variable episodes (ragged file), with
    `hierarchy` auto (Meta-Dataset's choice for the dataset), none, bilevel or dag; lake-runs: Lake's 20
    runs from a runs store (count, seed, ways, shots and queries are fixed by the runs)."""
    from fewshot.episodes.files import episode_file, make_episode_file
    from fewshot.episodes.metadataset import MetaDatasetConfig, MetaDatasetSampler, default_hierarchy
    from fewshot.episodes.within_parent import WithinParentSampler

    common = dict(dataset=split.dataset, split=split.name, class_names=split.class_names,
                  class_counts=split.class_counts, store_checksum=split.checksum, generated_by=generated_by,
                  source_variant=split.manifest.get("source_variant"))
    hierarchy_info = split.hierarchy()
    parent_index = None if hierarchy_info is None else hierarchy_info[1]
    if protocol == "fixed":
        return make_episode_file(split, ways, shots, queries, count, seed, generated_by)
    if protocol == "within-parent":
        batch = WithinParentSampler(split.class_counts, parent_index, ways, shots, queries, seed).sample(count)
        return episode_file(batch, seed=seed, protocol=protocol, setting=f"{ways}w{shots}s-within-parent",
                            sampler="WithinParentSampler/PCG64", **common)
    if protocol == "meta-dataset":
        if hierarchy == "auto":
            hierarchy = default_hierarchy(split.dataset, parent_index is not None)
        config = MetaDatasetConfig()
        batch = MetaDatasetSampler(split.class_counts, parent_index, hierarchy, seed, config).sample(count)
        return episode_file(batch, seed=seed, protocol=protocol, hierarchy=hierarchy,
                            setting=f"meta-dataset-{hierarchy}", sampler="MetaDatasetSampler/PCG64",
                            sampler_config=dataclasses.asdict(config), **common)
    if protocol == "lake-runs":
        batch = lake_runs_batch(split.class_names, split.class_counts)
        return episode_file(batch, seed=None, protocol=protocol, setting=f"{batch.ways}w1s-lake-runs",
                            sampler="Lake et al. 2015 all_runs.zip (fixed)", **common)
    raise FewshotError(f"unknown protocol {protocol!r}; choose one of {', '.join(SAMPLING_PROTOCOLS)}")
