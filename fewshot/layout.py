"""Memory layout of image batches (channels_last or NCHW), chosen per machine when the config says "auto".

Which layout is faster depends on the CPU or GPU, the backbone and the input size (Conv-4 at 28x28: NCHW
1.03-1.08x faster on one Intel Xeon, channels_last 1.6x faster on one AMD EPYC; benchmarks/README.md), so
`channels_last = "auto"` times both on a few batches of random images the first time and remembers the
answer in a small JSON file, per machine (CPU model or GPU name), backbone, input shape, batch size, mode
(eval: forward in inference mode; train: forward and backward), torch version and thread count. The file is
$FEWSHOT_LAYOUT_CACHE, else $XDG_CACHE_HOME/fewshot/layout.json, else ~/.cache/fewshot/layout.json; when it
cannot be read or written the choice is simply timed again next time (never an error).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from fewshot.config import check_layout_setting

def cache_path() -> Path:
    if os.environ.get("FEWSHOT_LAYOUT_CACHE"):
        return Path(os.environ["FEWSHOT_LAYOUT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fewshot" / "layout.json"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name and core count (what the choice depends on)."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"cpu {cpu_model()} x{os.cpu_count()}"


def layout_key(model: torch.nn.Module, input_shape: tuple[int, int, int], device: torch.device, batch: int,
               mode: str, backbone: str | None = None) -> str:
    channels, height, width = input_shape
    name = backbone or type(model).__name__
    return (f"{machine_name(device)} | {name} | {channels}x{height}x{width} | batch {batch} | {mode} | "
            f"torch {torch.__version__} | {torch.get_num_threads()} threads")


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, entry: dict) -> bool:
    """Add `entry` under `key`, atomically (a temporary file renamed); False (and nothing raised) on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = entry
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".layout-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(data, stream, indent=1, sort_keys=True)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return True
    except OSError:
        return False


def time_layouts(model: torch.nn.Module, input_shape: tuple[int, int, int], device: torch.device, batch: int,
                 mode: str = "eval", rounds: int = 3, forward: Callable | None = None) -> dict[str, float]:
    """Seconds per image of each layout: median of `rounds` alternating timings of one batch (after a warm-up).

    eval: forward under inference mode; train: forward and backward of the output's sum (gradients are
    cleared afterwards). `forward` (default: the model itself) is what is timed, e.g. a learner's embed.
    The model is left in NCHW; random inputs (the cost does not depend on values).
    """
    forward = forward or model
    # Timing must leave no trace: a training forward moves BatchNorm's running statistics, and the random
    # input draws from torch's generator. Both are put back, so "auto" trains the weights true/false would.
    saved_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_rng = torch.get_rng_state()
    saved_cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    x = torch.rand(batch, *input_shape, device=device)
    inputs = {"channels_last": x.contiguous(memory_format=torch.channels_last), "nchw": x.contiguous()}
    formats = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
    was_training = model.training
    model.train(mode == "train")

    def once(layout: str) -> float:
        model.to(memory_format=formats[layout])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        if mode == "train":
            forward(inputs[layout]).float().sum().backward()
        else:
            with torch.inference_mode():
                forward(inputs[layout])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    try:
        seconds: dict[str, list[float]] = {name: [] for name in inputs}
        for name in inputs:
            once(name)  # warm-up: first calls pick algorithms, allocate
        for _ in range(rounds):
            for name in inputs:
                seconds[name].append(once(name))
    finally:
        model.train(was_training)
        model.to(memory_format=torch.contiguous_format)
        if mode == "train":
            model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for key, value in model.state_dict().items():
                value.copy_(saved_state[key])
        torch.set_rng_state(saved_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state(saved_cuda_rng, device)
    return {name: statistics.median(values) / batch for name, values in seconds.items()}


def resolve_channels_last(setting: bool | str, model: torch.nn.Module, input_shape: tuple[int, int, int],
                          device: torch.device, batch: int = 256, mode: str = "eval",
                          backbone: str | None = None, forward: Callable | None = None) -> bool:
    """The layout to use: `setting` itself when True/False; for "auto" the cached or freshly timed choice.

    `input_shape` is (C, H, W). With "auto" the model is timed in both layouts (left in NCHW: the caller
    converts it to the answer). `batch`, the batch size to be used, is part of the cache key;
    `backbone` names the network in the key (default: the model's class); `forward` as in time_layouts.
    """
    setting = check_layout_setting(setting)
    if setting != "auto":
        return setting
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be eval or train, got {mode!r}")
    key = layout_key(model, tuple(input_shape), device, batch, mode, backbone)
    path = cache_path()
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict) and entry.get("layout") in ("channels_last", "nchw"):
        return entry["layout"] == "channels_last"
    # A few small batches: about a million input values each (256 images at 28x28x1, 49 at 84x84x3).
    timing_batch = max(8, min(int(batch), 256, (1 << 20) // max(1, math.prod(input_shape))))
    seconds = time_layouts(model, tuple(input_shape), device, timing_batch, mode, rounds=2, forward=forward)
    layout = min(seconds, key=seconds.get)
    _write_cache(path, key, {"layout": layout, "seconds_per_image": seconds,
                             "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
    return layout == "channels_last"
