"""Result records: one JSON file per (run, episode set), written atomically under a unique name.

A record holds the method, resolved config, the episode setting, `mean` and `ci95` (percent, 1.96 * std /
sqrt(n), ddof 0), `n_episodes`, every `per_episode_accuracy`, and provenance: commit, package versions,
store and episode checksums, seed, wall time and machine, and `head`: the classifier that scored the
episodes from the embeddings, its settings and label (fewshot/evaluate/heads; records written before heads existed
lack it and were scored by nearest prototype: `record_head`).
"""
from __future__ import annotations

import errno
import glob
import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np

from fewshot.atomic import write_json_atomic
from fewshot.config import config_digest
from fewshot.errors import FewshotError
from fewshot.stats import format_interval, mean_ci95
from fewshot.provenance import environment, git_commit, now

RECORD_FORMAT = "fewshot-result"
RECORD_VERSION = 1


def make_record(method: str, accuracies: np.ndarray, episode_meta: dict, store_checksum: str,
                config: dict | None = None, run: str | None = None, seconds: float | None = None,
                extra: dict | None = None, head: dict | None = None) -> dict:
    """`head`: the scoring head's `describe()` (name, settings, label); None for nearest prototype's default."""
    per_episode = [round(float(a), 6) for a in accuracies]
    # mean and ci95 from the stored accuracies, as tables recompute them, so the two always agree.
    mean, ci95 = mean_ci95(per_episode)
    record = {
        "format": RECORD_FORMAT,
        "format_version": RECORD_VERSION,
        "method": method,
        "setting": episode_meta.get("setting") or f"{episode_meta['ways']}w{episode_meta['shots']}s",
        "ways": episode_meta["ways"],
        "shots": episode_meta["shots"],
        "queries": episode_meta["queries"],
        "dataset": episode_meta["dataset"],
        "split": episode_meta["split"],
        "mean": round(mean, 4),
        "ci95": round(ci95, 4),
        "ci_method": "normal: 1.96*std/sqrt(n), ddof=0",
        "n_episodes": int(len(accuracies)),
        "per_episode_accuracy": per_episode,
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


def record_interval(record: dict) -> tuple[float, float]:
    """(mean, ci95) in percent at full precision from the record's per-episode accuracies: what tables use."""
    return mean_ci95(record["per_episode_accuracy"])


def record_summary(record: dict, decimals: int = 2) -> str:
    """`mean +- ci95` of a record, rounded once, exactly as `fewshot table` prints its cell."""
    return format_interval(*record_interval(record), decimals)


NAME_PART = 80  # characters of a method name in a file name: with the rest, well under the 255 of most file systems


def safe_name(name: str, limit: int = NAME_PART) -> str:
    """`name` as a file-name part: unsafe characters become '-', and a long name keeps its first characters
    and a hash of the whole (so any method name, however long, gives a valid and distinct file name)."""
    import hashlib

    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name) or "-"
    if len(safe) > limit:
        safe = f"{safe[:limit - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def record_filename(record: dict) -> str:
    safe = safe_name(record["method"])
    return (f"{safe}__{safe_name(record['dataset'], 40)}-{safe_name(record['setting'], 60)}__"
            f"{record['provenance']['episodes_checksum'][:8]}__{uuid.uuid4().hex[:8]}.json")


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


def evaluation_identity(record: dict) -> tuple:
    """What makes two records the same evaluation: method, run, checkpoint (and its step), head, distance,
    episodes, evaluated split and config. Two records with one identity are one measurement taken twice."""
    p = record["provenance"]
    run = os.path.normpath(p["run"]) if p.get("run") else None
    return (record["method"], run, record.get("checkpoint"), record.get("checkpoint_step"), record_head(record)["label"],
            record.get("distance"), p["episodes_checksum"], p["store_checksum"], config_digest(p.get("config") or {}))


def find_same_evaluation(folder: str | os.PathLike, record: dict) -> Path | None:
    """A record in `folder` of the same evaluation as `record` (see evaluation_identity), or None."""
    folder = Path(folder)
    prefix = record_filename(record).rsplit("__", 1)[0]  # names differ only in their random last part
    identity = evaluation_identity(record)
    for path in sorted(folder.glob(f"{glob.escape(prefix)}__*.json")):
        try:
            other = json.loads(path.read_text())
            if other.get("format") == RECORD_FORMAT and evaluation_identity(other) == identity:
                return path
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a readable record: never ours to replace
    return None


def check_record_target(path: str | os.PathLike, force: bool = False) -> None:
    """An explicit .json target may replace a result record, never another file, unless forced."""
    path = Path(path)
    if len(path.name.encode()) > 255:
        raise FewshotError(f"--out file name {path.name[:40]}... is {len(path.name.encode())} bytes, longer than "
                           "file systems allow (255); choose a shorter name")
    if path.suffix == ".json" and path.exists() and not force and not (path.is_file() and _is_record(path)):
        raise FewshotError(f"{path} exists and is not a fewshot result record; choose another --out, or pass "
                           "--force to replace it")


def write_record(record: dict, path_or_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write to the given .json path, or into a results folder; never a torn file (see write_record_reporting)."""
    return write_record_reporting(record, path_or_dir, force)[0]


def write_record_reporting(record: dict, path_or_dir: str | os.PathLike, force: bool = False) -> tuple[Path, bool]:
    """Write `record`; return its path and whether it replaced a record there.

    Into a folder, a record of the same evaluation (same run, checkpoint, head, episodes...; see
    evaluation_identity) is replaced atomically in place, so evaluating twice never leaves two records of one
    measurement (which `fewshot table` would refuse); other records get a new unique name. A .json path is
    written as given (replaced atomically if it holds a record; anything else only with `force`)."""
    target = Path(path_or_dir)
    check_record_target(target, force)
    replaced = target.suffix == ".json" and target.exists()
    if target.suffix != ".json":
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FewshotError(f"results folder {target} cannot be created ({exc.strerror}); choose another") from None
        folder = target
        same = find_same_evaluation(folder, record)
        replaced = same is not None
        target = same or folder / record_filename(record)
        while not replaced and target.exists():  # never replace another record, however unlikely a repeated name is
            target = folder / record_filename(record)
    if not os.access(target.parent if target.parent.exists() else target.parent.parent, os.W_OK):
        raise FewshotError(f"results folder {target.parent} is not writable; choose another --out or --results")
    try:
        write_json_atomic(target, record)
    except PermissionError:
        raise FewshotError(f"results folder {target.parent} is not writable; choose another") from None
    return target, replaced


def load_record(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        raise FewshotError(f"{path} is a folder; give a result record (.json) file, or a command that reads "
                           "folders (`fewshot table`, `fewshot compare`)")
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FewshotError(f"result file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"result file {path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise FewshotError(f"{path} is not a fewshot result record")
    check_record(record, str(path))
    record["_path"] = str(path)
    return record


RECORD_TYPES = {"method": str, "setting": str, "dataset": str, "mean": (int, float), "ci95": (int, float),
                "n_episodes": int, "per_episode_accuracy": list, "provenance": dict}


def check_record(record: dict, where: str) -> None:
    """The fields tables, comparisons and bench read, of the right types and agreeing with each other."""
    def bad(what: str) -> FewshotError:
        return FewshotError(f"result record {where}: {what}; the file was edited or damaged: evaluate again")

    for key, kind in RECORD_TYPES.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(f"{key!r} is {value!r}")
    accuracy = record["per_episode_accuracy"]
    if record["n_episodes"] != len(accuracy) or not accuracy:
        raise bad(f"n_episodes is {record['n_episodes']} but it lists {len(accuracy)} per-episode accuracies")
    values = np.asarray([a if isinstance(a, (int, float)) and not isinstance(a, bool) else np.nan
                         for a in accuracy], dtype=np.float64)
    if not np.all((values >= 0) & (values <= 1)):
        raise bad("a per-episode accuracy is not a number in [0, 1]")
    mean = float(values.mean() * 100)
    if not abs(mean - record["mean"]) <= 0.01:
        raise bad(f"its mean {record['mean']} is not the mean of its per-episode accuracies ({mean:.4f})")
    provenance = record["provenance"]
    for key in ("episodes_checksum", "store_checksum"):
        if not isinstance(provenance.get(key), str):
            raise bad(f"provenance.{key} is {provenance.get(key)!r}")
    if provenance.get("config") is not None and not isinstance(provenance["config"], dict):
        raise bad("provenance.config is not an object")


def load_records(paths: list[str | os.PathLike] | str | os.PathLike) -> list[dict]:
    """Load records from files and folders: every record (*.json of format fewshot-result) anywhere under a
    folder, subfolders included, in path order; other JSON files (run configs...) are passed over."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            records += [load_record(f) for f in sorted(p.rglob("*.json")) if _is_record(f)]
        else:
            records.append(load_record(p))
    if not records:
        raise FewshotError(f"no result records found in {', '.join(map(str, paths))} (or their subfolders)")
    return records


def _is_record(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == RECORD_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
        return False


def record_head(record: dict) -> dict:
    """The head a record was scored with: its `head` entry, or nearest prototype for records older than heads."""
    head = record.get("head")
    if isinstance(head, dict) and "name" in head:
        return {**head, "label": head.get("label", head["name"])}
    distance = record.get("distance", "euclidean")
    label = "nearest_prototype" if distance == "euclidean" else f"nearest_prototype(distance={distance})"
    return {"name": "nearest_prototype", "norm": "UN", "distance": distance, "label": label}
