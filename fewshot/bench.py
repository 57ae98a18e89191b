"""Benchmark a method: per seed, train a run (or reuse a finished one with the same resolved config),
evaluate it on fixed episode files, and keep one result record per (run, episode set).

Everything is keyed so that re-running does only what is missing:
- a run folder is `RUNS/<dataset>-<store id>/<config name>-<config digest>`; a finished run there is reused,
  a stopped one (checkpoints/last.pt) resumed;
- a record is identified by (config digest, episodes checksum, evaluated split checksum); one already in
  the results folder is not measured again;
- default episode files (when none are given) are drawn once, seed 0, into `RUNS/<dataset>-<store id>/episodes/`.
The ablation runner (fewshot/ablate.py) uses the same pieces.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

from fewshot.config import config_digest, load_config, run_digest, with_default_head
from fewshot.data.store import Store
from fewshot.episodes.files import EpisodeFile, load_episode_file, make_episode_file
from fewshot.errors import FewshotError
from fewshot.results.records import check_results_folder

DEFAULT_QUERIES = 15
DEFAULT_COUNT = 1000
EPISODE_SEED = 0

Log = Callable[[str], None]


def store_id(store: Store) -> str:
    """`<dataset>-<8 hex>`: a short name for a store, from the checksums of all its splits."""
    digest = hashlib.sha256()
    for name in sorted(store.split_names):
        manifest = json.loads((store.root / name / "manifest.json").read_text())
        digest.update(f"{name}:{manifest['checksum']};".encode())
    return f"{store.dataset}-{digest.hexdigest()[:8]}"


def fixed_episode_files(store: Store, ways: list[int], shots: list[int], folder: str | Path,
                        queries: int = DEFAULT_QUERIES, count: int = DEFAULT_COUNT, seed: int = EPISODE_SEED,
                        split: str = "test") -> list[EpisodeFile]:
    """One episode file per (ways, shots) on the store's `split`, drawn once and reused afterwards."""
    folder = Path(folder)
    test = store.split(split)
    files = []
    for w in ways:
        for s in shots:
            path = folder / f"{store.dataset}-{split}-{w}w{s}s-{queries}q-{count}-seed{seed}.npz"
            if not path.exists():
                command = (f"fewshot bench (episodes --split {split} --ways {w} --shots {s} --queries {queries} "
                           f"--count {count} --seed {seed})")
                make_episode_file(test, w, s, queries, count, seed, command).save(path)
            files.append(load_episode_file(path))
    return files


def check_episode_files(store: Store, files: list[EpisodeFile]) -> None:
    """Fail before any training when an episode file does not fit the store."""
    for f in files:
        if f.meta["split"] not in store.split_names:
            raise FewshotError(f"episode file {f.path} is for split {f.meta['split']!r}, which store {store.root} lacks")
        f.resolve(store.split(f.meta["split"]))


def run_folder(runs: str | Path, store: Store, config: dict) -> Path:
    """Named by the run digest: configs that differ only in their head (eval.head...) share one run."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in config["name"])
    return Path(runs) / store_id(store) / f"{safe}-{run_digest(config)}"


def run_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def train_or_reuse(config: dict, data: str | Path, run_dir: Path, progress: bool = True,
                   device_name: str | None = None, log: Log = print) -> str:
    """Make `run_dir` a finished run of `config`: reuse it, resume it, or train it. Returns what was done.

    The run is trained with the default head keys (a head only scores it), so every head reuses it."""
    from fewshot.train.loop import train

    config = with_default_head(config)
    digest = config_digest(config)
    saved = run_dir / "config.json"
    if saved.exists() and config_digest(json.loads(saved.read_text())) != digest:
        raise FewshotError(f"run folder {run_dir} holds a run of another config; move it away or choose another "
                           "--runs folder")
    if run_status(run_dir) == "finished" and (run_dir / "checkpoints" / "best.pt").exists():
        log(f"  reusing finished run {run_dir}")
        return "reused"
    if (run_dir / "checkpoints" / "last.pt").exists():
        log(f"  resuming {run_dir} from its last checkpoint")
        train(config, data, run_dir, resume=True, progress=progress, device_name=device_name)
        return "resumed"
    if run_dir.exists() and any(run_dir.iterdir()):
        # Our own folder (its config.json matched above, or none was written yet), stopped before its first
        # checkpoint: nothing in it can be resumed.
        log(f"  {run_dir} stopped before its first checkpoint; starting it again")
        shutil.rmtree(run_dir)
    log(f"  training {config['name']} (seed {config['seed']}) into {run_dir}")
    train(config, data, run_dir, resume=False, progress=progress, device_name=device_name)
    return "trained"


def record_key(record: dict) -> tuple[str, str, str]:
    p = record["provenance"]
    return config_digest(p.get("config") or {}), p["episodes_checksum"], p["store_checksum"]


def index_records(results: str | Path) -> dict[tuple[str, str, str], dict]:
    """Records already in a results folder, by (config digest, episodes checksum, split checksum)."""
    from fewshot.results.records import RECORD_FORMAT

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


def evaluate_floor(data: str | Path, store: Store, files: list[EpisodeFile], results: str | Path,
                   existing: dict, device_name: str = "auto", eval_settings: dict | None = None) -> list[dict]:
    """The raw-pixel floor on the same episodes (skipped where its records exist), scored by the head of
    `eval_settings` (default nearest prototype)."""
    from fewshot.config import DEFAULTS, HEAD_KEYS
    from fewshot.evaluate.run import evaluate_pixels
    from fewshot.results.records import write_record

    config: dict = {"backbone": "pixels", "distance": "euclidean"}  # what evaluate_pixels records
    changed = {k: v for k, v in (eval_settings or {}).items() if k in HEAD_KEYS and v != DEFAULTS["eval"][k]}
    if changed:
        config["eval"] = changed
    todo = missing_files(config, store, files, existing)
    have = [existing[key] for key in (_key(config, store, f) for f in files) if key in existing]
    new = evaluate_pixels(data, todo, device_name, eval_settings=eval_settings) if todo else []
    for record in new:
        record["_path"] = str(write_record(record, results))
    return have + new


def bench(method: str, data: str | Path, ways: list[int] = (5,), shots: list[int] = (1, 5),
          seeds: list[int] = (0, 1, 2), episode_paths: list[str | Path] | None = None,
          results: str | Path = "results", runs: str | Path = "work-runs", overrides: list[str] | None = None,
          device_name: str = "auto", precision: str | None = None, progress: bool = True, floor: bool = False,
          queries: int = DEFAULT_QUERIES, count: int = DEFAULT_COUNT, log: Log = print,
          head: str | None = None) -> list[dict]:
    """Train/reuse one run per seed, evaluate each on every episode file; return all its records.

    `head` (same as the override eval.head=NAME): score with that head; the runs are shared by all heads."""
    overrides = list(overrides or []) + ([f"eval.head={head}"] if head else [])
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise FewshotError("give seeds with --seeds, not a seed=... override")
    if not seeds:
        raise FewshotError("no seeds given; pass --seeds, e.g. --seeds 0,1,2")
    store = Store(data)
    check_results_folder(results)  # before any training, not after it
    configs = [load_config(method, [*overrides, f"seed={seed}"]) for seed in seeds]
    if precision:
        for config in configs:
            config["train"]["precision"] = precision
    if episode_paths:
        files = [load_episode_file(p) for p in episode_paths]
    else:
        files = fixed_episode_files(store, list(ways), list(shots), Path(runs) / store_id(store) / "episodes",
                                    queries, count)
    check_episode_files(store, files)
    existing = index_records(results)
    records: list[dict] = []
    for config in configs:
        run_dir = run_folder(runs, store, config)
        log(f"{config['name']} seed {config['seed']}:")
        todo = missing_files(config, store, files, existing)
        for f in files:
            record = existing.get(_key(config, store, f))
            if record is not None:
                log(f"  {f.setting}: record exists ({record['_path']}), skipped")
                records.append(record)
        if not todo:
            continue
        train_or_reuse(config, data, run_dir, progress, device_name, log)
        for record in evaluate_and_write(run_dir, data, todo, results, device_name, precision,
                                         eval_settings=config["eval"]):
            log(f"  {record['setting']}: {record['mean']:.2f} +- {record['ci95']:.2f} -> {record['_path']}")
            records.append(record)
    if floor:
        log("pixels (raw-pixel floor):")
        for record in evaluate_floor(data, store, files, results, existing, device_name, configs[0]["eval"]):
            log(f"  {record['setting']}: {record['mean']:.2f} +- {record['ci95']:.2f} ({record['_path']})")
            records.append(record)
    return records
