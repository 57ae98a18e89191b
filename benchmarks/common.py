"""Shared pieces of the benchmarks: generated stores, side-by-side timing, machine description, reporting.

Every benchmark prints ratios of methods timed side by side in one process: the methods are run in
interleaved rounds (A, B, C, A, B, C, ...) and each is summarised by its median round, so a load change on
the machine (other processes share its cores) hits all of them alike. Absolute rates are printed too, for
orientation only.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout without installing
    sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("FEWSHOT_BENCH_CACHE", Path(tempfile.gettempdir()) / "fewshot-bench"))
MINI_SHAPE = (84, 84, 3)


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch, load average when measured."""
    from fewshot.layout import cpu_model

    model = cpu_model()
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gb = float("nan")
    try:
        import torch

        torch_info = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if torch.cuda.is_available():
            torch_info += f", GPU {torch.cuda.get_device_name()}"
    except ImportError:
        torch_info = "no torch"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{model}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, Python {platform.python_version()}, "
            f"numpy {np.__version__}, {torch_info}, load average {load}")


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   {time.strftime('%Y-%m-%d %H:%M')} | {machine()}")


CLOCKS = {"cpu": time.thread_time, "process": time.process_time, "wall": time.perf_counter}


def interleaved(methods: dict[str, Callable[[], object]], rounds: int = 5, min_seconds: float = 0.3,
                warmup: int = 1, clock: str = "cpu") -> dict[str, float]:
    """Seconds per call of each method: median over `rounds` interleaved rounds of >= `min_seconds` each.

    clock "cpu" counts the CPU time of this thread only (single-threaded work: on a shared machine, time
    spent waiting for a core is not the method's), "process" the CPU time of all this process's threads,
    "wall" elapsed time.
    """
    now = CLOCKS[clock]
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    per_call: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            calls, started, wall = 0, now(), time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = now() - started
                # Enough clock time, or (a starved process) ten times that in wall time with 3+ calls.
                if elapsed >= min_seconds or (calls >= 3 and time.perf_counter() - wall > 10 * min_seconds):
                    break
            per_call[name].append(elapsed / calls)
    return {name: statistics.median(values) for name, values in per_call.items()}


class Report:
    """Collects targets (met or missed) and figures; prints them and optionally writes JSON for run_all."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: dict[str, object] = {}
        self.targets: list[dict] = []

    def figure(self, key: str, value: object) -> None:
        self.figures[key] = value

    def target(self, what: str, value: float, limit: float, higher_is_better: bool, unit: str = "") -> bool:
        met = value >= limit if higher_is_better else value <= limit
        sign = ">=" if higher_is_better else "<="
        self.targets.append({"what": what, "value": value, "limit": limit, "met": met, "unit": unit,
                             "direction": sign})
        print(f"TARGET {'MET   ' if met else 'MISSED'} {what}: {value:.3g}{unit} (target {sign} {limit:g}{unit})")
        return met

    def write(self, path: str | os.PathLike | None) -> None:
        if path:
            Path(path).write_text(json.dumps({"benchmark": self.name, "machine": machine(),
                                              "date": time.strftime("%Y-%m-%d %H:%M"),
                                              "figures": self.figures, "targets": self.targets}, indent=1))


def print_table(rows: list[list[str]], head: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print("   | " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |")
    print("   |" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("   | " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def generated_store(name: str, splits: dict[str, tuple[int, int]], shape: tuple[int, int, int] = MINI_SHAPE,
                    seed: int = 0) -> Path:
    """A store of random uint8 images, `splits` = {split: (classes, images per class)}, cached under CACHE.

    Random bytes: the benchmarks here move and sample bytes, so their content does not matter. Written
    through the real StoreWriter in chunks (memory stays at one chunk).
    """
    from fewshot.data.store import StoreWriter

    spec = "-".join(f"{s}{c}x{n}" for s, (c, n) in splits.items()) + "-" + "x".join(map(str, shape))
    out = CACHE / f"{name}-{spec}-seed{seed}"
    if (out / "store.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with StoreWriter(out, name, "generated-random", force=True) as writer:
        for split, (classes, per_class) in splits.items():
            labels = np.repeat(np.arange(classes), per_class)
            names = [f"{split}-{c:04d}" for c in range(classes)]
            sink = writer.split_sink(split, labels, names, shape)
            chunk = 2000
            for start in range(0, len(labels), chunk):
                stop = min(len(labels), start + chunk)
                sink.put(np.arange(start, stop), rng.integers(0, 256, (stop - start, *shape), dtype=np.uint8))
            writer.finish_split(split, sink)
    print(f"   generated {out} in {time.perf_counter() - started:.1f} s")
    return out


def mini_store() -> Path:
    """miniImageNet-shaped: train 64 x 600, test 20 x 600 images of 84x84x3 uint8 (about 1 GB)."""
    return generated_store("mini-like", {"train": (64, 600), "test": (20, 600)})


def warm_pages(images: np.ndarray) -> None:
    """Touch every page of a memmap once so that timings see the page cache, not the disk."""
    for start in range(0, len(images), 4096):
        int(np.asarray(images[start:start + 4096]).reshape(-1)[::4096].sum())


def add_common_args(parser) -> None:
    parser.add_argument("--json", help="also write the figures and targets to this JSON file")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run; figures are noisier)")
