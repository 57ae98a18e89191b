"""One benchmark point on disk: its run folder (trained, reused or resumed) and its result records.

`fewshot bench` (fewshot/bench.py), `fewshot ablate` (fewshot/ablate.py) and the jobs of a sweep
(fewshot/sweep/) all train and evaluate a point through these, so a point is keyed the same way everywhere:
- a run folder is `RUNS/<dataset>-<store id>/<config name>-<config digest>`; a finished run there is reused,
  a stopped one (checkpoints/last.pt) resumed;
- a record is identified by (config digest, episodes checksum, evaluated split checksum); one already in
  the results folder is not measured again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from fewshot.config import config_digest, run_digest, with_default_head
from fewshot.data.store import Store
from fewshot.episodes.files import EpisodeFile
from fewshot.errors import EnvironmentFailure, FewshotError, environment_error
from fewshot.locks import LOCK_NAME, hold_folder

Log = Callable[[str], None]


def store_id(store: Store) -> str:
    """`<dataset>-<8 hex>`: a short name for a store, from the checksums of all its splits."""
    digest = hashlib.sha256()
    for name in sorted(store.split_names):  # each split opened, so a damaged manifest is a one-line error
        digest.update(f"{name}:{store.split(name).checksum};".encode())
    return f"{store.dataset}-{digest.hexdigest()[:8]}"


def run_folder(runs: str | Path, store: Store, config: dict) -> Path:
    """Named by the run digest: configs that differ only in their head (eval.head...) share one run."""
    from fewshot.results.records import safe_name

    safe = safe_name(config["name"])
    return Path(runs) / store_id(store) / f"{safe}-{run_digest(config)}"


def run_status(run_dir: Path) -> str | None:
    """'finished', 'running', or None where run.json is missing or unreadable (then the run is trained again)."""
    from fewshot.runs.folder import read_run_file

    try:
        return read_run_file(run_dir, "run.json")["status"]
    except FewshotError:
        return None


def train_or_reuse(config: dict, data: str | Path, run_dir: Path, progress: bool = True,
                   device_name: str | None = None, log: Log = print, train_fn: Callable | None = None) -> str:
    """Make `run_dir` a finished run of `config`: reuse it, resume it, or train it. Returns what was done.

    `train_fn` trains in place of fewshot.train.loop.train, with its arguments (a sweep job's torchrun).
    The run folder is held (locks.hold_folder) from the first look to the end: a run another live process
    is training is refused with that process's pid, never resumed or cleared beside it."""
    try:
        with hold_folder(run_dir, "run"):
            return _train_or_reuse(config, data, run_dir, progress, device_name, log, train_fn)
    except EnvironmentFailure as exc:  # this command resumes by itself: no --resume to add
        raise EnvironmentFailure(f"{exc.problem}, then run the same command again", exc.problem) from None
    except OSError as exc:
        error = environment_error(exc)
        if error is None:
            raise
        raise error from None


def _train_or_reuse(config: dict, data: str | Path, run_dir: Path, progress: bool, device_name: str | None,
                    log: Log, train_fn: Callable | None) -> str:
    if train_fn is None:
        from fewshot.train.loop import train as train_fn
    config = with_default_head(config)  # a head only scores the run: every head reuses it

    digest = config_digest(config)
    saved = run_dir / "config.json"
    if saved.exists() and config_digest(_saved_config(saved)) != digest:
        raise FewshotError(f"run folder {run_dir} holds a run of another config; move it away or choose another "
                           "--runs folder")
    if run_status(run_dir) == "finished" and (run_dir / "checkpoints" / "best.pt").exists():
        log(f"  reusing finished run {run_dir}")
        return "reused"
    if (run_dir / "checkpoints" / "last.pt").exists():
        log(f"  resuming {run_dir} from its last checkpoint")
        train_fn(config, data, run_dir, resume=True, progress=progress, device_name=device_name)
        return "resumed"
    leftovers = [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.exists() else []
    if leftovers:
        # Our own folder (its config.json matched above, or none was written yet), stopped before its first
        # checkpoint: nothing in it can be resumed. (The lock we hold stays.)
        log(f"  {run_dir} stopped before its first checkpoint; starting it again")
        for path in leftovers:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    log(f"  training {config['name']} (seed {config['seed']}) into {run_dir}")
    train_fn(config, data, run_dir, resume=False, progress=progress, device_name=device_name)
    return "trained"


def _saved_config(path: Path) -> dict:
    """A run folder's config.json as saved; an unreadable one matches no config (so it is refused, not used)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"unreadable": str(path)}


def record_key(record: dict) -> tuple[str, str, str]:
    p = record["provenance"]
    return config_digest(p.get("config") or {}), p["episodes_checksum"], p["store_checksum"]


def index_records(results: str | Path) -> dict[tuple[str, str, str], dict]:
    """Records already in a results folder, by (config digest, episodes checksum, split checksum)."""
    from fewshot.results.records import RECORD_FORMAT, check_record

    found: dict[tuple[str, str, str], dict] = {}
    folder = Path(results)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
            try:
                check_record(record, str(path))
            except FewshotError:  # a damaged record counts as missing: its point is measured again
                continue
            record["_path"] = str(path)
            found[record_key(record)] = record
    return found


def _key(config: dict, store: Store, episode_file: EpisodeFile) -> tuple[str, str, str]:
    return config_digest(config), episode_file.checksum, store.split(episode_file.meta["split"]).checksum


def missing_files(config: dict, store: Store, files: list[EpisodeFile], existing: dict) -> list[EpisodeFile]:
    """The episode files `config` has no record for yet."""
    return [f for f in files if _key(config, store, f) not in existing]


def evaluate_and_write(run_dir: Path, data: str | Path, files: list[EpisodeFile], results: str | Path,
                       device_name: str = "auto", precision: str | None = None, method: str | None = None,
                       extra: dict | None = None, eval_settings: dict | None = None) -> list[dict]:
    """Evaluate `run_dir` on `files` (with the head of `eval_settings`, a config's `eval` section, when
    given), write one record each into `results`, return them."""
    from fewshot.evaluate.run import evaluate_run
    from fewshot.results.records import write_record

    records = evaluate_run(run_dir, files, data, device_name, precision, method=method, eval_settings=eval_settings)
    for record in records:
        if extra:
            record.update(extra)
        record["_path"] = str(write_record(record, results))
    return records
