"""Configs: TOML method files layered over DEFAULTS, with `key=value` overrides on the command line.

Every key a method may use exists in DEFAULTS, so an unknown key is an error with a suggestion, and a value
is converted to the type of its default (a wrong type is an error naming the key).
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from fewshot.errors import FewshotError

CONFIG_DIR = Path(__file__).parent / "configs"

DEFAULTS: dict[str, Any] = {
    "name": "custom",
    "seed": 0,
    "learner": "prototypical",
    "backbone": {"name": "conv4", "hidden": 64, "dropblock": 0.0},
    "head": {"kind": "identity", "dim": 128, "hidden": 512, "normalize": False},
    # Training episodes (prototypical learner); may use more ways than the test episodes.
    "episodes": {"ways": 20, "shots": 5, "queries": 5},
    # P classes x K images batches (siamese, center, classifier learners).
    "batch": {"classes": 16, "per_class": 4},
    "loss": {
        "name": "prototypical",
        "distance": "euclidean",
        "margin": 0.2,
        "mining": "batch_hard",
        "soft_margin": False,
        "triplet_reduction": "nonzero",
        "global_mining": False,  # triplets mined over all processes' batches (docs/distributed.md)
        "scale": 64.0,
        "center_margin": 0.2,
        "center_lambda": 1.0,
        "variant": "margin",
        "temperature": 0.1,
        "center_update": "gradient",
        "center_momentum": 0.9,
        "center_lr_scale": 1.0,
        "smoothing": 0.0,
    },
    "cir": {
        "enabled": False,
        "p": 0.5,
        "alpha": 0.5,
        "alpha_random": False,
        "negative": "random",
        "means": "batch",
        "memory_momentum": 0.9,
        "grad_through_means": False,
        "position": "after_norm",
        "global_batch": False,
    },
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "step_size": 2000, "gamma": 0.5, "momentum": 0.9},
    "train": {
        "steps": 2000,
        "split": "train",
        "val_split": "val",
        "val_every": 500,
        "val_episodes": 200,
        "val_ways": 5,
        "val_shots": 1,
        "val_queries": 15,
        "checkpoint_every": 500,
        # Keep the weights of every N-th step as checkpoints/step-N.pt (0: none). A run of S steps read at
        # step k is the run of k steps (the schedule counts steps), so one long run serves several lengths.
        "keep_every": 0,
        "log_every": 50,
        "device": "auto",
        "precision": "fp32",
        "channels_last": True,  # or false, or "auto": timed once per machine and backbone (fewshot/layout.py)
        "compile": False,
        "augment": False,
        "max_grad_norm": 0.0,
        # Episodes a step (episodic learners): the global batch, shared out over processes (docs/distributed.md).
        "episodes_per_step": 1,
        # SyncBatchNorm across processes (GPUs only), so a PK batch split over ranks normalises as a whole.
        "sync_batchnorm": False,
    },
    "eval": {"distance": "euclidean", "batch_episodes": 250},
}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


VALID_KEYS = _flatten(DEFAULTS)

# Counts that must be 1 or more: 0 or less would train nothing, draw no episode, or divide by zero.
POSITIVE_KEYS = {
    "episodes.ways", "episodes.shots", "episodes.queries", "batch.classes", "batch.per_class", "train.steps",
    "train.val_episodes", "train.val_ways", "train.val_shots", "train.val_queries", "train.checkpoint_every",
    "train.log_every", "train.episodes_per_step", "eval.batch_episodes",
}


# Keys that take true, false or "auto" (fewshot.layout: the memory layout timed once per machine and cached).
LAYOUT_KEYS = {"train.channels_last"}


def check_layout_setting(value: Any, what: str = "train.channels_last") -> bool | str:
    """True, False or "auto" (also "true"/"false"/"1"/"0"/"yes"/"no" as text); anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
    raise FewshotError(f"{what} must be true, false or \"auto\", got {value!r}")


def _coerce(key: str, value: Any, where: str) -> Any:
    default = VALID_KEYS[key]
    if key in LAYOUT_KEYS:
        try:
            return check_layout_setting(value, key)
        except FewshotError as exc:
            raise FewshotError(f"{where}: {exc}") from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    kind = type(default).__name__
    raise FewshotError(f"{where}: {key} must be {'an' if kind == 'int' else 'a'} {kind} like {default!r}, got {value!r}")


def _set(config: dict, key: str, value: Any, where: str) -> None:
    if key not in VALID_KEYS:
        close = difflib.get_close_matches(key, VALID_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise FewshotError(f"{where}: unknown config key {key!r}{hint}")
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = _coerce(key, value, where)
    if key in POSITIVE_KEYS and node[leaf] < 1:
        raise FewshotError(f"{where}: {key} must be a positive integer, got {node[leaf]}")
    if key == "train.keep_every" and node[leaf] < 0:
        raise FewshotError(f"{where}: train.keep_every must be 0 (keep no step) or a step interval, got {node[leaf]}")


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix in (".toml", ".json") or os.sep in name_or_file:
        if not path.is_file():
            raise FewshotError(f"config file {path} does not exist")
        return path
    candidate = CONFIG_DIR / f"{name_or_file}.toml"
    if not candidate.is_file():
        close = difflib.get_close_matches(name_or_file, list_configs(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FewshotError(f"unknown method config {name_or_file!r}{hint}; choose one of: {', '.join(list_configs())} or give a .toml file")
    return candidate


def load_config(name_or_file: str = "protonet", overrides: list[str] | dict | None = None) -> dict:
    """Resolve a config: DEFAULTS, then the method file, then overrides (`key=value` strings or a dict)."""
    config = copy.deepcopy(DEFAULTS)
    path = config_path(name_or_file)
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"config file {path} does not parse: {exc}") from None
    for key, value in _flatten(raw).items():
        _set(config, key, value, str(path))
    if path.parent == CONFIG_DIR and "name" not in raw:
        config["name"] = path.stem
    apply_overrides(config, overrides)
    return config


def apply_overrides(config: dict, overrides: list[str] | dict | None) -> dict:
    if not overrides:
        return config
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, value in items:
        _set(config, key, value, "override")
    return config


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise FewshotError(f"override {text!r} is not key=value (for example optim.lr=0.001)")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def flat(config: dict) -> dict[str, Any]:
    return _flatten(config)


def config_digest(config: dict) -> str:
    """A short stable hash of a resolved config (for naming runs and finding a finished one to reuse)."""
    import hashlib

    # train.keep_every only keeps copies of weights: it changes no step, and configs older than it lack it.
    if isinstance(config.get("train"), dict) and "keep_every" in config["train"]:
        config = {**config, "train": {k: v for k, v in config["train"].items() if k != "keep_every"}}
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
