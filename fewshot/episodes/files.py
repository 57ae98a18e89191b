"""Fixed episode files: the same test episodes for every method.

An `.npz` (loads with allow_pickle=False) holding `classes` (E, N) indices into `class_names`, `support`
(E, N, K) and `query` (E, N, Q) within-class ranks, and `meta`, a JSON string: format version, dataset,
split, class names and per-class image counts of the store it was drawn from, that store's checksum,
ways/shots/queries, seed, and the sha256 of the three arrays (the file's own checksum).

Images are named by (class name, rank), so a file made on one store is valid on any store of the same
dataset whose classes and per-class counts agree, whichever source variant it was prepared from.

Format version 2 is the ragged extension (meta `layout` "ragged"), for episodes of varying ways and
per-class shots (Meta-Dataset): instead of the three arrays it holds the six of
`fewshot.episodes.ragged.RaggedEpisodes` (`ways`, `classes`, `support_counts`, `query_counts`, `support`,
`query`), still class indices into `class_names` and within-class ranks, checksummed the same way; meta
`ways`/`shots`/`queries` are null and `setting` names the protocol. Version-1 files load as before.
Fixed-shape files of other protocols (within-parent, Lake's runs) stay version 1 with `protocol` and
`setting` in their meta.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot.atomic import write_bytes_atomic
from fewshot.data.store import StoreSplit
from fewshot.episodes.ragged import ARRAYS as RAGGED_ARRAYS
from fewshot.episodes.ragged import RaggedEpisodes
from fewshot.episodes.sampler import EpisodeBatch, EpisodeSampler
from fewshot.errors import FewshotError

EPISODE_FORMAT = "fewshot-episodes"
EPISODE_VERSION = 1
RAGGED_VERSION = 2  # the ragged extension
_FIXED_ARRAYS = ("classes", "support", "query")


def _arrays_checksum(batch: EpisodeBatch | RaggedEpisodes) -> str:
    digest = hashlib.sha256()
    ragged = isinstance(batch, RaggedEpisodes)
    for name in RAGGED_ARRAYS if ragged else _FIXED_ARRAYS:
        array = getattr(batch, name)
        if ragged:
            digest.update(name.encode())  # six arrays: a name each, so no two layouts hash alike
        digest.update(np.ascontiguousarray(array, dtype=np.int32).tobytes())
        digest.update(str(array.shape).encode())
    return digest.hexdigest()


META_TYPES = {"dataset": str, "split": str, "ways": int, "shots": int, "queries": int, "count": int,
              "class_names": list, "class_counts": list, "checksum": str}


def check_meta(meta, where: str, ragged: bool = False) -> None:
    """An episode file's meta holds every field it needs, of the right type, names and counts side by side.

    A ragged file (format version 2) has no one ways/shots/queries: those three are not checked."""
    if not isinstance(meta, dict):
        raise FewshotError(f"{where}: its meta is not a JSON object; regenerate the file")
    for key, kind in META_TYPES.items():
        if ragged and key in ("ways", "shots", "queries"):
            continue
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FewshotError(f"{where}: its meta field {key!r} should be {kind.__name__}, found {value!r}; "
                               "the file was edited or damaged: regenerate it")
    names, counts = meta["class_names"], meta["class_counts"]
    if (len(names) != len(counts) or not all(isinstance(n, str) for n in names)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
        raise FewshotError(f"{where}: its meta's class_names and class_counts do not pair up (names and counts >= 0); "
                           "the file was edited or damaged: regenerate it")


def check_episodes(batch: EpisodeBatch, class_counts, where: str, meta: dict | None = None,
                   class_names: list[str] | None = None) -> None:
    """Refuse episodes that do not fit the classes they index: vectorised, a few passes over the arrays.

    Shapes (E, N), (E, N, K), (E, N, Q) and, with `meta`, its ways/shots/queries/count; class indices within
    range and distinct in an episode; every rank within its class's image count; no image twice in an
    episode (support and query disjoint). `class_counts[i]` is the image count of class i.
    """
    c, s, q = batch.classes, batch.support, batch.query
    if (c.ndim != 2 or s.ndim != 3 or q.ndim != 3 or s.shape[:2] != c.shape or q.shape[:2] != c.shape
            or 0 in c.shape or s.shape[2] == 0 or q.shape[2] == 0):
        raise FewshotError(f"{where}: its arrays are not episodes (classes {c.shape}, support {s.shape}, query "
                           f"{q.shape}; expected (E, N), (E, N, K), (E, N, Q)); regenerate it")
    if meta is not None:
        for key, held in (("ways", c.shape[1]), ("shots", s.shape[2]), ("queries", q.shape[2]), ("count", len(c))):
            if meta.get(key) != held:
                raise FewshotError(f"{where}: its meta says {key} = {meta.get(key)} but its arrays hold {held}; "
                                   "the file was edited: regenerate it")
    counts = np.asarray(class_counts, dtype=np.int64)
    if c.min() < 0 or c.max() >= len(counts):
        bad = int(c.min() if c.min() < 0 else c.max())
        raise FewshotError(f"{where}: class index {bad} is outside 0..{len(counts) - 1}; regenerate the file")
    ordered = np.sort(c, axis=1)
    twice = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if twice.any():
        raise FewshotError(f"{where}: episode {int(np.argmax(twice))} names a class twice; regenerate the file")
    ranks = np.concatenate([s, q], axis=2)
    limit = counts[c][..., None]
    outside = (ranks < 0) | (ranks >= limit)
    if outside.any():
        e, n, k = (int(i) for i in np.argwhere(outside)[0])
        name = repr(class_names[int(c[e, n])]) if class_names else int(c[e, n])
        raise FewshotError(f"{where}: episode {e} asks for image {int(ranks[e, n, k])} of class {name}, which has "
                           f"{int(limit[e, n, 0])} images; the file was edited or made for another store")
    ranks.sort(axis=2)
    repeated = (ranks[..., 1:] == ranks[..., :-1]).any(axis=(1, 2))
    if repeated.any():
        raise FewshotError(f"{where}: episode {int(np.argmax(repeated))} uses one image twice (support and query "
                           "must be disjoint); the file was edited: regenerate it")


def _small_int(array: np.ndarray) -> np.ndarray:
    return array.astype(np.int16 if array.max(initial=0) < 32767 and array.min(initial=0) >= 0 else np.int32)


@dataclass
class EpisodeFile:
    meta: dict
    batch: EpisodeBatch | RaggedEpisodes
    path: Path | None = None

    @property
    def checksum(self) -> str:
        return self.meta["checksum"]

    @property
    def ragged(self) -> bool:
        return isinstance(self.batch, RaggedEpisodes)

    @property
    def setting(self) -> str:
        """Column name in tables, e.g. '5w1s', '20w1s-within-parent' or 'meta-dataset-bilevel'."""
        return self.meta.get("setting") or f"{self.meta['ways']}w{self.meta['shots']}s"

    def __len__(self) -> int:
        return len(self.batch)

    def save(self, path: str | os.PathLike) -> None:
        buffer = io.BytesIO()
        if self.ragged:
            arrays = {name: _small_int(getattr(self.batch, name)) for name in RAGGED_ARRAYS}
            arrays["classes"] = self.batch.classes.astype(np.int32)
        else:
            arrays = {"classes": self.batch.classes.astype(np.int32), "support": _small_int(self.batch.support),
                      "query": _small_int(self.batch.query)}
        np.savez_compressed(buffer, **arrays, meta=np.array(json.dumps(self.meta)))
        write_bytes_atomic(path, buffer.getvalue())

    def resolve(self, split: StoreSplit) -> EpisodeBatch | RaggedEpisodes:
        """Map this file's classes onto `split`; refuse when the store is not the one it was made for."""
        names = self.meta["class_names"]
        counts = self.meta["class_counts"]
        where = f"episode file {self.path or ''}".strip()
        # Checked before the checksum shortcut: a split's checksum covers its arrays, not the dataset name.
        if self.meta["dataset"] != split.dataset:
            raise FewshotError(
                f"{where} was made for dataset {self.meta['dataset']!r} but the store holds {split.dataset!r}; "
                "use episodes made for this dataset"
            )
        if self.meta.get("store_checksum") == split.checksum:
            if not self.ragged:  # ragged episodes are checked by RaggedEpisodes itself as they load
                check_episodes(self.batch, split.class_counts, where, class_names=split.class_names)
            return self.batch
        index = {name: i for i, name in enumerate(split.class_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise FewshotError(
                f"{where} names {len(missing)} classes the store's {split.name} split lacks (e.g. {missing[0]!r}); "
                "it was made for a different split or store"
            )
        mapping = np.array([index[n] for n in names], dtype=np.int32)
        # "at_least": drawn from the first class_counts[i] images of each class, for splits whose exact counts
        # were not published (tieredImageNet: every class has at least 732 images); valid on any larger class.
        at_least = self.meta.get("class_counts_rule") == "at_least"
        wrong = [n for n, c in zip(names, counts)
                 if (int(split.class_counts[index[n]]) < int(c) if at_least else int(split.class_counts[index[n]]) != int(c))]
        if wrong:
            n = wrong[0]
            raise FewshotError(
                f"{where} expects {'at least ' if at_least else ''}{counts[names.index(n)]} images of class {n!r} "
                f"but the store has {int(split.class_counts[index[n]])}; it was made for a different store"
            )
        if self.ragged:
            return self.batch.with_classes(mapping[self.batch.classes])
        resolved = EpisodeBatch(mapping[self.batch.classes], self.batch.support, self.batch.query)
        check_episodes(resolved, split.class_counts, where, class_names=split.class_names)
        return resolved


def build_episode_file(dataset: str, split: str, class_names: list[str], class_counts, ways: int, shots: int,
                       queries: int, count: int, seed: int, store_checksum: str | None, generated_by: str = "",
                       **provenance) -> EpisodeFile:
    """Draw `count` episodes over classes given by sorted names and counts; `provenance` adds meta fields."""
    counts = np.asarray(class_counts, dtype=np.int64)
    batch = EpisodeSampler(counts, ways, shots, queries, seed, list(class_names)).sample(count)
    meta = {
        "format": EPISODE_FORMAT,
        "format_version": EPISODE_VERSION,
        "dataset": dataset,
        "split": split,
        "store_checksum": store_checksum,
        "source_variant": provenance.pop("source_variant", None),
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "count": count,
        "seed": seed,
        "sampler": "EpisodeSampler/PCG64",
        "generated_by": generated_by,
        **provenance,
        "class_names": [str(n) for n in class_names],
        "class_counts": [int(c) for c in counts],
        "checksum": _arrays_checksum(batch),
    }
    return EpisodeFile(meta, batch)


def episode_file(batch: EpisodeBatch | RaggedEpisodes, dataset: str, split: str, class_names: list[str],
                 class_counts, seed: int | None, store_checksum: str | None, generated_by: str = "",
                 **fields) -> EpisodeFile:
    """An episode file of any protocol: `fields` (protocol, setting, sampler, ...) go into the meta.

    Fixed-shape batches are version 1 with their ways/shots/queries; ragged ones the version-2 extension."""
    ragged = isinstance(batch, RaggedEpisodes)
    shape = ({"ways": None, "shots": None, "queries": None} if ragged else
             {"ways": batch.ways, "shots": batch.shots, "queries": batch.queries})
    meta = {
        "format": EPISODE_FORMAT,
        "format_version": RAGGED_VERSION if ragged else EPISODE_VERSION,
        **({"layout": "ragged"} if ragged else {}),
        "dataset": dataset,
        "split": split,
        "store_checksum": store_checksum,
        "source_variant": fields.pop("source_variant", None),
        **shape,
        "count": len(batch),
        "seed": seed,
        "generated_by": generated_by,
        **fields,
        "class_names": [str(n) for n in class_names],
        "class_counts": [int(c) for c in np.asarray(class_counts)],
        "checksum": _arrays_checksum(batch),
    }
    return EpisodeFile(meta, batch)


def make_episode_file(split: StoreSplit, ways: int, shots: int, queries: int, count: int, seed: int,
                      generated_by: str = "") -> EpisodeFile:
    return build_episode_file(split.dataset, split.name, split.class_names, split.class_counts, ways, shots, queries,
                              count, seed, split.checksum, generated_by,
                              source_variant=split.manifest.get("source_variant"))


def load_episode_file(path: str | os.PathLike) -> EpisodeFile:
    path = Path(path)
    if not path.is_file():
        raise FewshotError(f"episode file {path} does not exist; make one with `fewshot episodes`")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != EPISODE_FORMAT:
                raise FewshotError(f"{path} is not a fewshot episode file")
            version = meta.get("format_version")
            if version not in (EPISODE_VERSION, RAGGED_VERSION):
                raise FewshotError(f"episode file {path} is format version {version}; this fewshot reads versions "
                                   f"{EPISODE_VERSION} and {RAGGED_VERSION}: update fewshot or regenerate the file")
            if version == RAGGED_VERSION:
                try:
                    batch = RaggedEpisodes(*(data[name].astype(np.int64) for name in RAGGED_ARRAYS))
                except FewshotError as exc:
                    raise FewshotError(f"episode file {path} is damaged ({exc}); regenerate it") from None
            else:
                batch = EpisodeBatch(data["classes"].astype(np.int64), data["support"].astype(np.int64),
                                     data["query"].astype(np.int64))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
        raise FewshotError(f"episode file {path} is not a readable fewshot episode file ({exc})") from None
    if _arrays_checksum(batch) != meta.get("checksum"):
        raise FewshotError(f"episode file {path} fails its checksum; it was modified or damaged, regenerate it")
    where = f"episode file {path}"
    ragged = isinstance(batch, RaggedEpisodes)
    check_meta(meta, where, ragged)
    if not ragged:
        check_episodes(batch, meta["class_counts"], where, meta, meta["class_names"])
    return EpisodeFile(meta, batch, path)
