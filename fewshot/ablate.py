"""Ablations: a grid over config keys, every point trained and evaluated on the same fixed episodes.

A SPEC is a TOML file (examples in ablations/):

    name = "cir-strength-siamese"            # default: the file's stem
    config = "siamese-triplet-cir"           # base method config (name, or a .toml path)
    data = "stores/omniglot"                 # prepared store (--data overrides)
    out = "work-runs/ablations/cir"          # output folder (--out overrides; default work-runs/ablations/NAME)
    seeds = [0]                              # training seeds of every point
    overrides = { "train.steps" = 5000 }     # fixed for every point
    baselines = [{ "cir.enabled" = false }]  # optional extra points outside the grid (rows in the table,
                                             # dashed reference lines in the plot); before any [table]

    [grid]                                   # key -> list of values; every combination is a point
    "cir.p" = [0.25, 0.5, 0.75]              # (quoted dotted keys; a nested table works too)
    "cir.alpha" = [0.25, 0.5, 1.0]
    # config = ["protonet", "siamese-triplet"]  # the special key `config` sweeps the base config
    # "eval.head" = ["nearest_prototype", "logistic"]  # heads: points differing only in head share a run

    [episodes]                               # fixed episode files ...
    files = ["episodes/omniglot-vinyals-test-5w1s-15q-1000.npz"]
    # ... or drawn once from the store's test split:
    # ways = [5]  shots = [1, 5]  queries = 15  count = 1000  seed = 0

Relative paths are taken from the current folder. Output: OUT/runs/ (one run folder per point and seed,
named by config digest), OUT/results/ (records, or --results), OUT/table.md, OUT/table.csv and
OUT/ablation.png (accuracy +- 95% CI against each swept key, one line per combination of the others).

A point whose records exist is skipped; a stopped run resumes from checkpoints/last.pt; so an ablation
can be stopped and started again at any time. `jobs` worker processes run points in parallel, each with
max(1, cores // jobs) torch threads.

An optional `[executor]` table runs the points elsewhere (docs/cluster.md; the command line overrides it):

    [executor]
    name = "slurm"                           # local (default), slurm, or submitit-local
    partition = "gpu"                        # and gpus_per_job, cpus_per_job, mem = "32G",
    time = "12:00:00"                        # array_parallelism, max_requeues, setup = ["module load cuda"],
    slurm_extra = { account = "myproject" }  # wait = true, jobs (local)
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fewshot.bench import (DEFAULT_COUNT, DEFAULT_QUERIES, EPISODE_SEED, check_episode_files, fixed_episode_files,
                           index_records, missing_files, run_folder, store_id)
from fewshot.config import DEFAULTS, VALID_KEYS, apply_overrides, config_digest, load_config, unknown_key_message
from fewshot.config import flat as flat_config
from fewshot.data.store import Store
from fewshot.episodes.files import load_episode_file
from fewshot.errors import FewshotError
from fewshot.locks import hold_folder
from fewshot.results.records import check_results_folder
from fewshot.sweep import ExecutorOptions, PointStatus, PointTask, collect_statuses, launch
from fewshot.sweep.options import from_table

CONFIG_KEY = "config"
SPEC_KEYS = {"name", "config", "data", "out", "seeds", "overrides", "grid", "baselines", "episodes", "description",
             "device", "executor"}
EPISODE_KEYS = {"files", "ways", "shots", "queries", "count", "seed"}


@dataclass
class AblationSpec:
    path: Path
    name: str
    config: str
    data: str
    out: Path
    grid: dict[str, list]
    baselines: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: dict[str, Any] = field(default_factory=dict)
    episode_files: list[str] | None = None
    ways: list[int] = field(default_factory=lambda: [5])
    shots: list[int] = field(default_factory=lambda: [1, 5])
    queries: int = DEFAULT_QUERIES
    count: int = DEFAULT_COUNT
    episode_seed: int = EPISODE_SEED
    device: str = "auto"
    executor: dict[str, Any] = field(default_factory=dict)  # the [executor] table, checked (fewshot/sweep/options.py)


@dataclass
class Point:
    """One grid point at one seed."""

    index: int
    values: dict[str, Any]
    seed: int
    config: dict
    label: str
    baseline: bool = False

    @property
    def digest(self) -> str:
        return config_digest(self.config)


def _as_list(value: Any, what: str, spec: Path) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise FewshotError(f"{spec}: {what} is an empty list; give at least one value")
    return values


def _int(value: Any, what: str, spec: Path, low: int = 1) -> int:
    """An integer of the spec (TOML gives int already; a string of digits is taken too), at least `low`."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise FewshotError(f"{spec}: {what} must be an integer of {low} or more, got {value!r}")
    return value


def _ints(value: Any, what: str, spec: Path, low: int = 1) -> list[int]:
    return [_int(v, what, spec, low) for v in _as_list(value, what, spec)]


def _table(raw: dict, key: str, spec: Path) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise FewshotError(f"{spec}: {key} must be a table (key = value pairs), got {value!r}")
    return value


def _text_value(raw: dict, key: str, spec: Path) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FewshotError(f"{spec}: {key} must be a string, got {value!r}")
    return value


def load_spec(path: str | os.PathLike, data: str | None = None, out: str | None = None,
              extra_overrides: list[str] | None = None) -> AblationSpec:
    """Read and check a SPEC; `data`, `out` and `extra_overrides` (key=value strings, applied over the
    spec's own overrides but under the grid's values) take precedence over what it says."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FewshotError(f"ablation spec {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"ablation spec {path} does not parse: {exc}") from None
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise FewshotError(f"{path}: unknown key {unknown[0]!r}; a spec has {', '.join(sorted(SPEC_KEYS))}")
    for key in ("name", "config", "data", "out", "device", "description"):
        _text_value(raw, key, path)
    grid = flat_config(_table(raw, "grid", path))
    if not grid:
        raise FewshotError(f"{path}: the [grid] is empty; list at least one config key with its values")
    for key, values in grid.items():
        if key != CONFIG_KEY and key not in VALID_KEYS:
            raise FewshotError(f"{path}: [grid] {unknown_key_message(key)}")
        if not isinstance(values, list) or not values:
            raise FewshotError(f"{path}: grid key {key!r} must list its values, e.g. {key!r} = [a, b]")
        if key != CONFIG_KEY:
            for value in values:  # each value alone, so the error names the one that is wrong
                apply_overrides(copy.deepcopy(DEFAULTS), {key: value}, f"{path}: [grid] {key} = {value!r}")
    baselines = raw.get("baselines") or []
    if not isinstance(baselines, list) or not all(isinstance(b, dict) and b for b in baselines):
        raise FewshotError(f"{path}: baselines must be a list of override tables, e.g. baselines = "
                           "[{ \"cir.enabled\" = false }]")
    baselines = [flat_config(b) for b in baselines]
    for b in baselines:
        for key in b:
            if key != CONFIG_KEY and key not in VALID_KEYS:
                raise FewshotError(f"{path}: baselines: {unknown_key_message(key)}")
    if CONFIG_KEY not in raw and CONFIG_KEY not in grid:
        raise FewshotError(f"{path}: name the base method with config = \"METHOD\"")
    data = data or raw.get("data")
    if not data:
        raise FewshotError(f"{path}: no data store; add data = \"DIR\" to the spec or pass --data")
    episodes = _table(raw, "episodes", path)
    unknown = sorted(set(episodes) - EPISODE_KEYS)
    if unknown:
        raise FewshotError(f"{path}: unknown [episodes] key {unknown[0]!r}; use {', '.join(sorted(EPISODE_KEYS))}")
    name = str(raw.get("name") or path.stem)
    seeds = _ints(raw.get("seeds", [0]), "seeds", path, low=0)
    overrides = flat_config(_table(raw, "overrides", path))
    for text in extra_overrides or []:
        if "=" not in text:
            raise FewshotError(f"override {text!r} is not key=value (for example train.steps=100)")
        key, value = (part.strip() for part in text.split("=", 1))
        if key not in VALID_KEYS:
            raise FewshotError(f"override: {unknown_key_message(key)}")
        overrides[key] = value
    if "seed" in overrides or "seed" in grid:
        raise FewshotError(f"{path}: give seeds with seeds = [...], not as an override or grid key")
    spec = AblationSpec(
        path=path, name=name, config=str(raw.get(CONFIG_KEY, "")), data=str(data),
        out=Path(out or raw.get("out") or Path("work-runs") / "ablations" / name), grid=grid, baselines=baselines,
        seeds=seeds,
        overrides=overrides, device=str(raw.get("device", "auto")),
        episode_files=[str(f) for f in _as_list(episodes["files"], "episodes.files", path)] if "files" in episodes else None,
        ways=_ints(episodes.get("ways", [5]), "episodes.ways", path),
        shots=_ints(episodes.get("shots", [1, 5]), "episodes.shots", path),
        queries=_int(episodes.get("queries", DEFAULT_QUERIES), "episodes.queries", path),
        count=_int(episodes.get("count", DEFAULT_COUNT), "episodes.count", path),
        episode_seed=_int(episodes.get("seed", EPISODE_SEED), "episodes.seed", path, low=0),
        executor=from_table(raw["executor"], str(path)) if "executor" in raw else {},
    )
    return spec


def _config_name(name: str, spec: AblationSpec) -> str:
    """A .toml base config given relative to the spec's folder, when it is there."""
    if name.endswith(".toml") and not Path(name).is_absolute() and not Path(name).exists():
        beside = spec.path.parent / name
        if beside.exists():
            return str(beside)
    return name


def _text(value: Any) -> str:
    """A value as the spec writes it (TOML booleans are lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in values.items())


def expand(spec: AblationSpec) -> list[Point]:
    """Baselines, then every grid combination, each at every seed, configs resolved (a bad key or value
    fails here, before any run)."""
    keys = list(spec.grid)
    combinations = [(values, True) for values in spec.baselines]
    combinations += [(dict(zip(keys, c)), False) for c in itertools.product(*(spec.grid[k] for k in keys))]
    points: list[Point] = []
    seen: set[str] = set()
    for index, (values, baseline) in enumerate(combinations):
        base = _config_name(str(values.get(CONFIG_KEY, spec.config)), spec)
        point_overrides = {k: v for k, v in values.items() if k != CONFIG_KEY}
        if baseline:  # a short row name; the table's header line and the plot legend say what it is
            label = "baseline" if len(spec.baselines) == 1 else f"baseline {index + 1}"
        else:
            label = _label(values)
        for seed in spec.seeds:
            config = load_config(base, {**spec.overrides, **point_overrides, "seed": seed})
            point = Point(index, values, seed, config, label, baseline)
            if point.digest not in seen:  # a value listed twice is one point
                seen.add(point.digest)
                points.append(point)
    return points


@dataclass
class AblationOutcome:
    points: list[Point]
    records: list[dict]
    done_before: int
    ran: int
    failed: list[tuple[Point, str]]
    pending: int
    table: Path | None
    plot: Path | None
    submitted: int = 0  # handed to submitted jobs this time, not awaited
    busy: int = 0  # left alone: a live job already holds them


REPORT_FILES = ("table.md", "table.csv", "ablation.png")
REPORT_MARK = ".fewshot-ablation.json"  # which report files under OUT fewshot wrote (and may replace)


def check_report_files(out: Path, force: bool = False) -> None:
    """Refuse to replace a table.md, table.csv or ablation.png under OUT that fewshot did not write."""
    try:
        written = set(json.loads((out / REPORT_MARK).read_text()).get("written", []))
    except (OSError, ValueError, AttributeError):
        written = set()
    foreign = [name for name in REPORT_FILES if (out / name).exists() and name not in written]
    if foreign and not force:
        raise FewshotError(f"{out / foreign[0]} was not written by fewshot ablate; choose another --out, move it "
                           "away, or pass --force to replace it")


@dataclass
class _Plan:
    """What an ablation has on disk: its points, the store, episode files, folders, and each point's task."""

    points: list[Point]
    store: Store
    files: list
    runs: Path
    results: Path
    tasks: list[PointTask]  # of the points lacking a record ...
    todo: list[Point]  # ... which are these
    done: list[bool]  # per point


def _plan(spec: AblationSpec, results: str | Path | None, device_name: str | None,
          progress: bool | str = False) -> _Plan:
    points = expand(spec)
    store = Store(spec.data)
    results = Path(results) if results else spec.out / "results"
    runs = spec.out / "runs"
    if spec.episode_files:
        files = [load_episode_file(p) for p in spec.episode_files]
    else:
        files = fixed_episode_files(store, spec.ways, spec.shots, runs / store_id(store) / "episodes", spec.queries,
                                    spec.count, spec.episode_seed)
    check_episode_files(store, files)
    existing = index_records(results)
    tasks, todo, done = [], [], []
    for point in points:
        missing = missing_files(point.config, store, files, existing)
        done.append(not missing)
        if missing:
            todo.append(point)
            tasks.append(PointTask(label=point.label, seed=point.seed, config=point.config, data=spec.data,
                                   run_dir=str(run_folder(runs, store, point.config)), results=str(results),
                                   episode_paths=[str(f.path) for f in files], device=device_name or spec.device,
                                   method=point.label,
                                   extra={"ablation": {"spec": spec.name, "point": point.values, "seed": point.seed}},
                                   progress=progress))
    return _Plan(points, store, files, runs, results, tasks, todo, done)


def run_ablation(spec: AblationSpec, jobs: int = 1, results: str | Path | None = None, max_points: int | None = None,
                 device_name: str | None = None, log: Callable[[str], None] = print,
                 executor: ExecutorOptions | None = None, progress: bool | str = False,
                 force: bool = False) -> AblationOutcome:
    """Run every unfinished point (at most `max_points` this time), then write the table and plot.

    `executor` says where (default: `jobs` local processes); points a live job already holds are left alone,
    and submitted jobs are awaited only with executor.wait (a later run, or --status, collects them).
    `progress` is each training run's (fewshot.train.loop.train) when the points run one at a time here.
    OUT is held for the whole command (locks.hold_folder): a second `ablate` on it is refused with the
    holder's pid. A table.md, table.csv or ablation.png under OUT that fewshot did not write is replaced
    only with `force`."""
    if jobs < 1:
        raise FewshotError(f"--jobs must be 1 or more, got {jobs}")
    if spec.out.exists() and not spec.out.is_dir():
        raise FewshotError(f"--out {spec.out} is a file, not a folder; choose another --out")
    check_report_files(spec.out, force)
    with hold_folder(spec.out, "ablation"):
        return _run_ablation(spec, jobs, results, max_points, device_name, log, executor, progress)


def _run_ablation(spec: AblationSpec, jobs: int, results: str | Path | None, max_points: int | None,
                  device_name: str | None, log: Callable[[str], None], executor: ExecutorOptions | None,
                  progress: bool | str) -> AblationOutcome:
    options = executor or ExecutorOptions(jobs=jobs)
    check_results_folder(Path(results) if results else spec.out / "results")  # before any training, not after it
    plan = _plan(spec, results, device_name, progress if options.name == "local" and options.jobs == 1 else False)
    points, tasks = plan.points, plan.tasks
    done_before = len(points) - len(tasks)
    sweep = launch(tasks, options, plan.runs / store_id(plan.store) / "submitit", log, max_points,
                   name=f"fewshot-{spec.name}")
    where = (f"with {options.jobs} job(s)" if options.name == "local" else f"on {options.name}")
    log(f"ablation {spec.name}: {len(points)} points ({len(spec.grid)} keys x {len(spec.seeds)} seeds), "
        f"{done_before} finished before, running {len(sweep.launched)} now {where}"
        + (f", {len(sweep.busy)} held by live jobs" if sweep.busy else ""))
    point_of = {id(task): point for task, point in zip(tasks, plan.todo)}  # executors may rewrite its paths
    failed: list[tuple[Point, str]] = []
    ran = 0
    for task, outcome in sweep.outcomes:
        point = point_of[id(task)]
        if outcome["ok"]:
            ran += 1
            summary = "; ".join(f"{s} {interval}" for s, interval, _ in outcome["records"])
            log(f"  [{done_before + ran}/{len(points)}] {point.label} seed {point.seed} ({outcome['how']}): {summary}")
        elif outcome.get("stop"):
            raise FewshotError(f"point {point.label} seed {point.seed}: {outcome['error']}")
        else:
            failed.append((point, outcome["error"]))
            log(f"  FAILED {point.label} seed {point.seed}: {outcome['error']}"
                + (f" (log: {outcome['log']})" if outcome.get("log") else ""))
    submitted = 0 if sweep.waits else len(sweep.launched)
    records = _ablation_records(index_records(plan.results), points, plan.store, plan.files)
    table, plot = (write_report(spec, points, records) if records else (None, None))
    pending = len(tasks) - len(sweep.launched) - len(sweep.busy)
    return AblationOutcome(points, records, done_before, ran, failed, pending, table, plot, submitted, len(sweep.busy))


def ablation_status(spec: AblationSpec, results: str | Path | None = None) -> list[tuple[Point, PointStatus]]:
    """Every point's status, from the run, point and record folders (fewshot/sweep/status.py)."""
    plan = _plan(spec, results, None)
    run_dirs = [run_folder(plan.runs, plan.store, point.config) for point in plan.points]
    return list(zip(plan.points, collect_statuses(list(zip(run_dirs, plan.done)))))


def _ablation_records(found: dict, points: list[Point], store: Store, files) -> list[dict]:
    """The records of this ablation's points on its episode files, in grid order."""
    records = []
    for point in points:
        for f in files:
            record = found.get((point.digest, f.checksum, store.split(f.meta["split"]).checksum))
            if record is not None:
                record["method"] = point.label  # the grid point names the row, whatever the record says
                records.append(record)
    return records


def write_report(spec: AblationSpec, points: list[Point], records: list[dict]) -> tuple[Path, Path]:
    """OUT/table.md, OUT/table.csv and OUT/ablation.png from the records."""
    import pandas as pd

    from fewshot.atomic import write_json_atomic, write_text_atomic
    from fewshot.results.plots import plot_sweep
    from fewshot.results.tables import format_table, summarise

    order = list(dict.fromkeys(p.label for p in points))
    table_path = spec.out / "table.md"
    write_json_atomic(spec.out / REPORT_MARK, {"spec": spec.name, "written": list(REPORT_FILES)})
    header = f"# Ablation {spec.name}\n\nBase config: {spec.config or 'swept'}; grid: " + "; ".join(
        f"{k} in [{', '.join(map(_text, v))}]" for k, v in spec.grid.items()) + f"; seeds {spec.seeds}"
    header += "".join(f"; {p.label}: {_label(p.values)}" for p in points if p.baseline and p.seed == spec.seeds[0])
    header += ".\n\n"
    # With a baseline point, every row also gets its paired difference from it.
    present = {r["method"] for r in records}
    baseline = next((p.label for p in points if p.baseline and p.label in present), None)
    # Rows are grid points (whose labels name a swept eval.head), not (method, head) pairs.
    write_text_atomic(table_path, header + format_table(records, "md", order=order, baseline=baseline,
                                                        head_rows=False))
    write_text_atomic(spec.out / "table.csv", format_table(records, "csv", order=order, baseline=baseline,
                                                           head_rows=False))
    data = summarise(records, order=order, head_rows=False)
    points_by_label = {p.label: p for p in points}
    keys = list(spec.grid)
    swept, references = [], []
    for _, cell in data.cells.iterrows():
        point = points_by_label[cell["row"]]
        row = {"column": cell["column"], "mean": cell["mean"], "half": cell["half"]}
        if point.baseline:
            references.append({**row, "label": f"{point.label}: {_label(point.values)}"})
        else:
            swept.append({**point.values, **row})
    by_column = lambda rows: sorted(rows, key=lambda r: data.columns.index(r["column"]))  # noqa: E731
    plot_path = plot_sweep(pd.DataFrame(by_column(swept)), keys, spec.out / "ablation.png", levels=spec.grid,
                           title=f"{spec.name} (test accuracy, mean \u00b1 95% CI)",
                           references=pd.DataFrame(by_column(references)) if references else None)
    return table_path, plot_path
