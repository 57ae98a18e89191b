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

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fewshot.config import config_digest, load_config
from fewshot.data.store import Store
from fewshot.episodes.files import EpisodeFile, load_episode_file, make_episode_file
from fewshot.errors import FewshotError
from fewshot.points import (_key, evaluate_and_write, index_records, missing_files, record_key,  # noqa: F401 (re-exported)
                            run_folder, run_status, store_id, train_or_reuse)
from fewshot.results.records import check_results_folder, record_summary

DEFAULT_QUERIES = 15
DEFAULT_COUNT = 1000
EPISODE_SEED = 0

Log = Callable[[str], None]

if TYPE_CHECKING:
    from fewshot.sweep import ExecutorOptions, PointStatus


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


def _bench_plan(method: str, data: str | Path, ways, shots, seeds, episode_paths, runs, overrides, precision,
                queries: int, count: int) -> tuple[Store, list[dict], list[EpisodeFile]]:
    """The store, one resolved config per seed, and the episode files of a bench."""
    overrides = list(overrides or [])
    if any(o.split("=", 1)[0].strip() == "seed" for o in overrides):
        raise FewshotError("give seeds with --seeds, not a seed=... override")
    if not seeds:
        raise FewshotError("no seeds given; pass --seeds, e.g. --seeds 0,1,2")
    store = Store(data)
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
    return store, configs, files


def bench(method: str, data: str | Path, ways: list[int] = (5,), shots: list[int] = (1, 5),
          seeds: list[int] = (0, 1, 2), episode_paths: list[str | Path] | None = None,
          results: str | Path = "work-runs/results", runs: str | Path = "work-runs",
          overrides: list[str] | None = None,
          device_name: str = "auto", precision: str | None = None, progress: bool = True, floor: bool = False,
          queries: int = DEFAULT_QUERIES, count: int = DEFAULT_COUNT, log: Log = print,
          executor: ExecutorOptions | None = None, head: str | None = None) -> list[dict]:
    """Train/reuse one run per seed, evaluate each on every episode file; return all its records.

    `head` (same as the override eval.head=NAME): score with that head; the runs are shared by all heads.

    With a submitting `executor` (slurm, submitit-local) each seed that lacks records is a job of one array
    (fewshot/sweep/); the records returned are those in the results folder once the jobs are submitted, or,
    with executor.wait, once they have ended."""
    check_results_folder(results)  # before any training, not after it
    overrides = list(overrides or []) + ([f"eval.head={head}"] if head else [])
    store, configs, files = _bench_plan(method, data, ways, shots, seeds, episode_paths, runs, overrides, precision,
                                        queries, count)
    existing = index_records(results)
    records: list[dict] = []
    tasks = []
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
        if executor is not None and executor.submits:
            from fewshot.sweep import PointTask

            tasks.append(PointTask(label=config["name"], seed=config["seed"], config=config, data=str(data),
                                   run_dir=str(run_dir), results=str(results), episode_paths=[str(f.path) for f in files],
                                   device=device_name, precision=precision))
            continue
        train_or_reuse(config, data, run_dir, progress, device_name, log)
        for record in evaluate_and_write(run_dir, data, todo, results, device_name, precision,
                                         eval_settings=config["eval"]):
            log(f"  {record['setting']}: {record_summary(record)} -> {record['_path']}")
            records.append(record)
    if tasks:
        records += _launch_seeds(tasks, executor, Path(runs) / store_id(store) / "submitit", store, files, results,
                                 method, log)
    if floor:
        log("pixels (raw-pixel floor):")
        for record in evaluate_floor(data, store, files, results, existing, device_name, configs[0]["eval"]):
            log(f"  {record['setting']}: {record_summary(record)} ({record['_path']})")
            records.append(record)
    return records


def _launch_seeds(tasks: list, executor, folder: Path, store: Store, files: list[EpisodeFile], results: str | Path,
                  method: str, log: Log) -> list[dict]:
    """Hand the seeds lacking records to the executor; the records of theirs in the results folder after."""
    from fewshot.sweep import launch

    sweep = launch(tasks, executor, folder, log, name=f"fewshot-bench-{Path(method).stem}")
    if sweep.busy:
        log(f"{len(sweep.busy)} seed(s) left alone: a live job holds them (see --status)")
    for task, outcome in sweep.outcomes:
        if outcome["ok"]:
            summary = "; ".join(f"{s} {interval}" for s, interval, _ in outcome["records"])
            log(f"  {task.label} seed {task.seed} ({outcome['how']}): {summary}")
        else:
            log(f"  FAILED {task.label} seed {task.seed}: {outcome['error']}"
                + (f" (log: {outcome['log']})" if outcome.get("log") else ""))
    if not sweep.waits and sweep.launched:
        log(f"{len(sweep.launched)} seed(s) submitted; run the same command again to collect their records "
            "(--status shows where they stand)")
    found = index_records(results)
    keys = [(config_digest(task.config), f.checksum, store.split(f.meta["split"]).checksum) for task in tasks
            for f in files]
    return [found[key] for key in keys if key in found]


def bench_status(method: str, data: str | Path, ways: list[int] = (5,), shots: list[int] = (1, 5),
                 seeds: list[int] = (0, 1, 2), episode_paths: list[str | Path] | None = None,
                 results: str | Path = "work-runs/results", runs: str | Path = "work-runs",
          overrides: list[str] | None = None,
                 precision: str | None = None, queries: int = DEFAULT_QUERIES,
                 count: int = DEFAULT_COUNT) -> list[tuple[dict, PointStatus]]:
    """Each seed's status (done, running, failed, pending), from the run, point and record folders."""
    from fewshot.sweep import collect_statuses

    store, configs, files = _bench_plan(method, data, ways, shots, seeds, episode_paths, runs, overrides, precision,
                                        queries, count)
    existing = index_records(results)
    points = [(run_folder(runs, store, c), not missing_files(c, store, files, existing)) for c in configs]
    return list(zip(configs, collect_statuses(points)))
