"""The Python API: what `import fewshot` offers a notebook or a script (README, "Python API").

A small surface that stays stable while the modules under it move; every function returns plain objects:
run summaries and result records are dicts (the JSON that `fewshot train` and `fewshot eval` write),
`records_frame` gives a pandas DataFrame, embeddings are numpy arrays. Like the command line, it imports
torch only inside the functions that need it, so `import fewshot` stays cheap.

    store = fewshot.prepare("synthetic", "work/synthetic")
    config = fewshot.load_config("protonet", {"train.steps": 200})
    fewshot.train_run(config, store, "work/run")
    episodes = fewshot.make_episodes(store, ways=5, shots=1, count=500)
    records = fewshot.evaluate_run("work/run", episodes, out="work/results")
    print(fewshot.table(records))

Training and evaluation are `train_run` and `evaluate_run`, not `train` and `evaluate`: those names are the
subpackages fewshot.train and fewshot.evaluate, which Python sets on the package once they are imported.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

from fewshot.config import DEFAULTS, apply_overrides, flat, load_config
from fewshot.data.store import Store
from fewshot.errors import FewshotError

__all__ = ["prepare", "Store", "load_config", "make_episodes", "load_episodes", "train_run", "load_learner",
           "evaluate_run", "embed", "load_records", "records_frame", "table", "compare", "FewshotError"]

PathLike = str | os.PathLike


def prepare(dataset: str, out: PathLike, src: PathLike | None = None, *, exist_ok: bool = True, force: bool = False,
            seed: int = 0, download: bool = False, resize: str = "bilinear", workers: int = 2,
            progress: bool = False) -> Store:
    """Prepare `dataset` (see `fewshot prepare --list`) from `src` into the store `out`, and open it.

    With `exist_ok` (the default) a store already at `out` is opened as it is (`force` replaces it)."""
    from fewshot.data.registry import get_format

    if exist_ok and not force and (Path(out) / "store.json").exists():
        return Store(out)
    fmt = get_format(dataset)
    if fmt.needs_src and not src:
        raise FewshotError(f"prepare {fmt.name} needs src, the folder holding the downloaded files")
    fmt.prepare(src, out, force=force, seed=seed, download_missing=download, resize=resize, workers=workers,
                progress=progress)
    return Store(out)


def _store_path(data: Store | PathLike) -> Path:
    return data.root if isinstance(data, Store) else Path(data)


def make_episodes(data: Store | PathLike, ways: int = 5, shots: int = 1, queries: int = 15, count: int = 1000,
                  seed: int = 0, split: str = "test", out: PathLike | None = None):
    """A fixed episode file drawn from `split` of the store (saved to `out` when given): an EpisodeFile."""
    from fewshot.episodes.files import make_episode_file

    store = data if isinstance(data, Store) else Store(data)
    episodes = make_episode_file(store.split(split), ways, shots, queries, count, seed,
                                 f"fewshot.make_episodes(split={split!r}, ways={ways}, shots={shots}, "
                                 f"queries={queries}, count={count}, seed={seed})")
    if out is not None:
        episodes.save(out)
        episodes.path = Path(out)
    return episodes


def load_episodes(path: PathLike):
    """An episode file written by `fewshot episodes` or `make_episodes` (checksum checked): an EpisodeFile."""
    from fewshot.episodes.files import load_episode_file

    return load_episode_file(path)


def _resolve_config(config: str | dict, overrides: dict | list[str] | None) -> dict:
    """A method name or file through load_config; a dict checked key by key against DEFAULTS like a file."""
    if isinstance(config, dict):
        resolved = apply_overrides(copy.deepcopy(DEFAULTS), flat(config), "config")
        return apply_overrides(resolved, overrides)
    return load_config(str(config), overrides)


def train_run(config: str | dict, data: Store | PathLike, out: PathLike, overrides: dict | list[str] | None = None,
              *, resume: bool = False, progress: bool | str = True, device: str | None = None) -> dict:
    """Train a config (method name, .toml/.json file, or a config dict) into run folder `out`; the run summary.

    `progress`: True (a bar on a terminal, plain lines otherwise), "lines" or False. `device` defaults to
    the config's train.device. With `resume`, a larger train.steps extends a finished run."""
    from fewshot.train.loop import train

    return train(_resolve_config(config, overrides), _store_path(data), out, resume=resume, progress=progress,
                 device_name=device)


def load_learner(run: PathLike, checkpoint: str = "best", device: str = "auto"):
    """The trained learner of a run folder, in eval mode: `learner.embed(images)` takes float (B, C, H, W)
    or uint8 (B, H, W, C) store images."""
    from fewshot.device import resolve_device
    from fewshot.runs import load_run

    return load_run(run, checkpoint, resolve_device(device))[0]


def _episode_files(episodes) -> list:
    from fewshot.episodes.files import EpisodeFile, load_episode_file

    items = episodes if isinstance(episodes, (list, tuple)) else [episodes]
    return [e if isinstance(e, EpisodeFile) else load_episode_file(e) for e in items]


def evaluate_run(run: PathLike, episodes, *, data: Store | PathLike | None = None, checkpoint: str = "best",
                 method: str | None = None, out: PathLike | None = None, device: str = "auto",
                 precision: str | None = None) -> list[dict]:
    """Evaluate a run folder, or the raw-pixel floor (`run="pixels"`, with `data`), on episode files.

    `episodes`: an EpisodeFile, a path, or a list of them. Returns one record (dict) a file; with `out` (a
    results folder, or a .json for one file) each is also written, as `fewshot eval --out` writes it (the
    record of the same evaluation replaced), and its path is in record["_path"]."""
    from fewshot.evaluate.run import evaluate_pixels
    from fewshot.evaluate.run import evaluate_run as evaluate
    from fewshot.results.records import write_record

    files = _episode_files(episodes)
    if str(run) == "pixels":
        if data is None:
            raise FewshotError("evaluate_run('pixels', ...) needs data, the prepared store")
        records = evaluate_pixels(_store_path(data), files, device)
    else:
        records = evaluate(run, files, None if data is None else _store_path(data), device, precision, checkpoint,
                           method)
    if out is not None:
        if Path(out).suffix == ".json" and len(records) > 1:
            raise FewshotError(f"out={out} names one .json file but {len(records)} episode files were given")
        for record in records:
            record["_path"] = str(write_record(record, out))
    return records


def embed(run, images, *, checkpoint: str = "best", device: str = "auto", batch_size: int = 500):
    """Embeddings (N, D) float32 numpy of `images` by a run's learner (a run folder, or a loaded learner).

    `images`: a store split (`store.split("test")`), uint8 store images (N, H, W, C), or float (N, C, H, W)."""
    import numpy as np
    import torch

    from fewshot.data.store import StoreSplit
    from fewshot.evaluate.embed import embed_rows

    learner = run if isinstance(run, torch.nn.Module) else load_learner(run, checkpoint, device)
    where = next(learner.parameters()).device
    learner.eval()
    if isinstance(images, StoreSplit):
        images = images.images
    if isinstance(images, torch.Tensor) and images.dtype != torch.uint8:
        with torch.no_grad():
            chunks = [learner.embed(images[i:i + batch_size].to(where)).float().cpu()
                      for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.empty((0, 0), np.float32)
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise FewshotError(f"images must be uint8 (N, H, W, C) store images or float (N, C, H, W), got "
                           f"{images.dtype} {images.shape}")
    rows = np.arange(len(images))
    return embed_rows(learner.embed, images, rows, where, batch_size).numpy()


def load_records(paths: PathLike | Iterable[PathLike]) -> list[dict]:
    """Result records (dicts) from files and folders (subfolders too); each has its file in "_path"."""
    from fewshot.results.records import load_records as load

    return load([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))


def _records(records) -> list[dict]:
    if isinstance(records, (str, os.PathLike)):
        return load_records(records)
    records = list(records)
    if records and not isinstance(records[0], dict):
        return load_records(records)
    return records


def records_frame(records) -> Any:
    """A pandas DataFrame, one row a record: method, seed, dataset, split, setting, ways, shots, queries,
    n_episodes, mean, ci95 (percent, from the per-episode accuracies), checkpoint, head, run, episodes
    (checksum), accuracy (the per-episode array) and path. `records`: dicts, or files/folders of them."""
    import numpy as np
    import pandas as pd

    from fewshot.results.records import record_head, record_interval

    rows = []
    for r in _records(records):
        p = r["provenance"]
        mean, ci95 = record_interval(r)
        rows.append({"method": r["method"], "seed": p.get("seed"), "dataset": r["dataset"], "split": r.get("split"),
                     "setting": r["setting"], "ways": r["ways"], "shots": r["shots"], "queries": r["queries"],
                     "n_episodes": r["n_episodes"], "mean": mean, "ci95": ci95, "checkpoint": r.get("checkpoint"),
                     "head": record_head(r)["label"], "run": p.get("run"), "episodes": p["episodes_checksum"],
                     "accuracy": np.asarray(r["per_episode_accuracy"], dtype=np.float64), "path": r.get("_path")})
    return pd.DataFrame(rows)


def table(records, fmt: str = "md", decimals: int = 2, baseline: str | None = None, ci: str = "normal",
          per_seed: bool = False) -> str:
    """The table `fewshot table` prints (md, csv or latex) of records (dicts, or files/folders of them)."""
    from fewshot.results.tables import format_table

    return format_table(_records(records), fmt, decimals, baseline=baseline, ci=ci, per_seed=per_seed)


def compare(a: dict | PathLike, b: dict | PathLike) -> dict:
    """Paired difference A - B (percent points) of two records on the same episodes, as a dict: method_a,
    method_b, setting, dataset, mean_a, mean_b, n, mean, ci95 (normal), ci95_t, p_ttest, p_wilcoxon."""
    from dataclasses import asdict

    from fewshot.evaluate.compare import compare_records
    from fewshot.results.records import load_record

    a = a if isinstance(a, dict) else load_record(a)
    b = b if isinstance(b, dict) else load_record(b)
    result = asdict(compare_records(a, b))
    return {**{k: v for k, v in result.items() if k != "difference"}, **result["difference"]}
