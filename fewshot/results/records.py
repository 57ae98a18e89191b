"""Result records: one JSON file per (run, episode set), written atomically under a unique name.

A record holds the method, resolved config, the episode setting, `mean` and `ci95` (percent, 1.96 * std /
sqrt(n), ddof 0), `n_episodes`, every `per_episode_accuracy`, and provenance: commit, package versions,
store and episode checksums, seed, wall time and machine, and `head`: the classifier that scored the
episodes from the embeddings, its settings and label (fewshot/heads; records written before heads existed
lack it and were scored by nearest prototype: `record_head`).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from fewshot.atomic import write_json_atomic
from fewshot.errors import FewshotError
from fewshot.evaluate.stats import mean_ci95
from fewshot.provenance import environment, git_commit, now

RECORD_FORMAT = "fewshot-result"
RECORD_VERSION = 1


def make_record(method: str, accuracies: np.ndarray, episode_meta: dict, store_checksum: str,
                config: dict | None = None, run: str | None = None, seconds: float | None = None,
                extra: dict | None = None, head: dict | None = None) -> dict:
    """`head`: the scoring head's `describe()` (name, settings, label); None for nearest prototype's default."""
    mean, ci95 = mean_ci95(accuracies)
    record = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "method": method,
        "setting": f"{episode_meta['ways']}w{episode_meta['shots']}s",
        "ways": episode_meta["ways"],
        "shots": episode_meta["shots"],
        "queries": episode_meta["queries"],
        "dataset": episode_meta["dataset"],
        "split": episode_meta["split"],
        "mean": round(mean, 4),
        "ci95": round(ci95, 4),
        "ci_method": "normal: 1.96*std/sqrt(n), ddof=0",
        "n_episodes": int(len(accuracies)),
        "per_episode_accuracy": [round(float(a), 6) for a in accuracies],
        "provenance": {
            "episodes_checksum": episode_meta["checksum"],
            "episodes_seed": episode_meta.get("seed"),
            "store_checksum": store_checksum,
            "run": run,
            "seed": None if config is None else config.get("seed"),
            "config": config,
            "commit": git_commit(),
            "environment": environment(),
            "eval_seconds": None if seconds is None else round(seconds, 3),
            "time": now(),
        },
    }
    record["head"] = head or {"name": "nearest_prototype", "norm": "UN", "distance": "euclidean",
                              "label": "nearest_prototype"}
    if extra:
        record.update(extra)
    return record


def record_filename(record: dict) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in record["method"])
    return f"{safe}__{record['dataset']}-{record['setting']}__{record['provenance']['episodes_checksum'][:8]}__{uuid.uuid4().hex[:8]}.json"


def check_results_folder(folder: str | os.PathLike) -> Path:
    """Prove a file can be written in `folder` (or, if it does not exist yet, in its nearest existing parent)
    without creating anything: fail now, not after hours of training."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise FewshotError(f"results folder {folder} is not writable ({exc.strerror}); choose another --out or "
                           "--results") from None
    return folder


def write_record(record: dict, path_or_dir: str | os.PathLike) -> Path:
    """Write to the given .json path, or to a unique name inside a results folder; never a torn file."""
    target = Path(path_or_dir)
    if target.suffix != ".json":
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FewshotError(f"results folder {target} cannot be created ({exc.strerror}); choose another") from None
        folder = target
        target = folder / record_filename(record)
        while target.exists():  # never replace another record, however unlikely a repeated name is
            target = folder / record_filename(record)
    if not os.access(target.parent if target.parent.exists() else target.parent.parent, os.W_OK):
        raise FewshotError(f"results folder {target.parent} is not writable; choose another --out or --results")
    try:
        write_json_atomic(target, record)
    except PermissionError:
        raise FewshotError(f"results folder {target.parent} is not writable; choose another") from None
    return target


def load_record(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FewshotError(f"result file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"result file {path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise FewshotError(f"{path} is not a fewshot result record")
    record["_path"] = str(path)
    return record


def load_records(paths: list[str | os.PathLike]) -> list[dict]:
    """Load records from files and folders (every *.json found directly inside a folder)."""
    records = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            records += [load_record(f) for f in sorted(p.glob("*.json")) if _is_record(f)]
        else:
            records.append(load_record(p))
    if not records:
        raise FewshotError(f"no result records found in {', '.join(map(str, paths))}")
    return records


def _is_record(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == RECORD_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def record_head(record: dict) -> dict:
    """The head a record was scored with: its `head` entry, or nearest prototype for records older than heads."""
    head = record.get("head")
    if isinstance(head, dict) and "name" in head:
        return {**head, "label": head.get("label", head["name"])}
    distance = record.get("distance", "euclidean")
    label = "nearest_prototype" if distance == "euclidean" else f"nearest_prototype(distance={distance})"
    return {"name": "nearest_prototype", "norm": "UN", "distance": distance, "label": label}
