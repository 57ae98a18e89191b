"""Configs: TOML method files layered over DEFAULTS, with `key=value` overrides on the command line.

Every key a method may use exists in DEFAULTS, so an unknown key is an error with a suggestion, and a value
is converted to the type of its default (a wrong type is an error naming the key).
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

from fewshot.errors import FewshotError

CONFIG_DIR = Path(__file__).parent / "configs"

DEFAULTS: dict[str, Any] = {
    "name": "custom",
    "seed": 0,
    "learner": "prototypical",
    # model/weights/pretrained/input_size: backbone.name = "timm" (fewshot/models/backbones/timm_backbone.py).
    "backbone": {"name": "conv4", "hidden": 64, "dropblock": 0.0, "model": "", "weights": "", "pretrained": False,
                 "input_size": 0},
    "head": {"kind": "identity", "dim": 128, "hidden": 512, "normalize": False},
    # Training episodes (prototypical learner); may use more ways than the test episodes.
    "episodes": {"ways": 20, "shots": 5, "queries": 5, "protocol": "fixed"},
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
        "apply_to": "all",  # siamese (triplet) learner: "anchors" moves only the anchors' features
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
        # Also write the logged scalars as TensorBoard events in RUN/tensorboard/ (log.csv stays the record).
        "tensorboard": False,
    },
    "eval": {
        "distance": "euclidean",
        "batch_episodes": 250,
        # The classifier that scores episodes from the cached embeddings (fewshot/evaluate/heads/, `fewshot list`).
        "head": "nearest_prototype",
        "head_norm": "default",  # UN, L2N or CL2N features (SimpleShot); default: the head's own
        "head_C": 1.0,  # logistic: inverse L2 penalty (scikit-learn's C)
        "head_classifier": "linear",  # finetune: linear or cosine
        "head_epochs": 100,  # finetune: passes over the support set
        "head_lr": 0.01,
        "head_batch": 4,
        "head_weight_decay": 0.001,
        "head_seed": 0,
    },
}

# Keys that only choose how episodes are scored from the embeddings: a run (its weights) does not depend on
# them, so run folders ignore them, and a config digest leaves them out at their defaults (so digests of
# configs written before heads existed are unchanged).
HEAD_KEYS = ("head", "head_norm", "head_C", "head_classifier", "head_epochs", "head_lr", "head_batch",
             "head_weight_decay", "head_seed")


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

# One line of help a key, for `fewshot list keys` (tests/commands/test_list.py checks that every key has one).
KEY_HELP: dict[str, str] = {
    "name": "method name in run folders, records and tables",
    "seed": "seed of initialisation, training sampler and validation episodes",
    "learner": "prototypical (episodes), siamese (triplet), center (center contrastive) or classifier (cross-entropy)",
    "backbone.name": "conv4, resnet12 or resnet18 (see `fewshot list`)",
    "backbone.hidden": "channels of every conv4 block",
    "backbone.dropblock": "DropBlock probability of resnet12 (0: off)",
    "backbone.model": "timm model name when backbone.name = timm (any name timm.list_models() gives)",
    "backbone.weights": "local weights file (safetensors or a torch state dict) for a timm backbone",
    "backbone.pretrained": "timm's pretrained weights from the hub (needs the network; else use backbone.weights)",
    "backbone.input_size": "input size N (N x N) a timm backbone resizes to (0: the model's own)",
    "head.kind": "embedding head on the backbone: identity, linear or mlp",
    "head.dim": "output size of a linear or mlp head",
    "head.hidden": "hidden width of an mlp head",
    "head.normalize": "L2-normalise embeddings",
    "episodes.ways": "classes a training episode (prototypical learner)",
    "episodes.shots": "support images a class of a training episode",
    "episodes.queries": "query images a class of a training episode",
    "episodes.protocol": "training episodes: fixed (uniform N-way K-shot) or within-parent (all classes under one parent)",
    "batch.classes": "P, classes of a PK training batch (siamese, center, classifier)",
    "batch.per_class": "K, images a class of a PK training batch",
    "loss.name": "training loss: prototypical, triplet, center_contrastive, cross_entropy, label_smoothing",
    "loss.distance": "euclidean or cosine, in the loss",
    "loss.margin": "triplet margin",
    "loss.mining": "triplet mining: batch_hard, semi_hard or all",
    "loss.soft_margin": "softplus instead of the hinge (Hermans's soft margin)",
    "loss.triplet_reduction": "nonzero (mean over active triplets) or mean (over all mined)",
    "loss.global_mining": "mine triplets over all processes' batches (docs/distributed.md)",
    "loss.scale": "center contrastive: logit scale s",
    "loss.center_margin": "center contrastive: margin m (variant margin)",
    "loss.center_lambda": "center contrastive: weight of the pull to the own center",
    "loss.variant": "center contrastive: margin or temperature",
    "loss.temperature": "center contrastive: tau (variant temperature)",
    "loss.center_update": "center contrastive: centers learned by gradient or ema",
    "loss.center_momentum": "center contrastive: momentum of ema centers",
    "loss.center_lr_scale": "center contrastive: learning rate of learned centers, times optim.lr",
    "loss.smoothing": "classifier: label smoothing",
    "cir.enabled": "Class Interference Regularization on training features",
    "cir.p": "CIR: probability that a sample is moved",
    "cir.alpha": "CIR: step towards the negative class mean (1: onto it)",
    "cir.alpha_random": "CIR: each sample's step drawn from U(0, alpha)",
    "cir.negative": "CIR: random (one other class) or mean (of all other class means)",
    "cir.means": "CIR: batch class means or a running memory of them",
    "cir.memory_momentum": "CIR: momentum of the memory of class means",
    "cir.grad_through_means": "CIR: let gradients flow through the class means",
    "cir.position": "CIR: before_norm (features as given) or after_norm (their directions)",
    "cir.global_batch": "CIR: class means over all processes' batches",
    "cir.apply_to": "CIR in the triplet (siamese) learner: all samples, or anchors only (positives, negatives clean)",
    "optim.name": "adam or sgd (Nesterov)",
    "optim.lr": "learning rate",
    "optim.weight_decay": "weight decay",
    "optim.step_size": "steps between learning-rate decays (StepLR)",
    "optim.gamma": "learning-rate factor at each decay",
    "optim.momentum": "sgd momentum",
    "train.steps": "training steps (episodes or batches); a larger value with --resume extends a run",
    "train.split": "store split to train on (e.g. train, trainval)",
    "train.val_split": "store split to validate on",
    "train.val_every": "steps between validations (0: none; the last step is the model)",
    "train.val_episodes": "validation episodes (drawn once from seed + 10000)",
    "train.val_ways": "ways of validation episodes (at most the val split's classes)",
    "train.val_shots": "shots of validation episodes",
    "train.val_queries": "queries a class of validation episodes",
    "train.checkpoint_every": "steps between resumable checkpoints (checkpoints/last.pt)",
    "train.keep_every": "keep the weights of every N-th step as checkpoints/step-N.pt (0: none)",
    "train.tensorboard": "also write the logged scalars to RUN/tensorboard/ (needs fewshot[tensorboard])",
    "train.log_every": "steps a row of log.csv covers (plain progress lines come every few rows)",
    "train.device": "auto, cpu, cuda or cuda:N (--device overrides)",
    "train.precision": "fp32, or bf16/fp16 autocast (--precision overrides)",
    "train.channels_last": "channels_last memory format (faster conv on CPU)",
    "train.compile": "torch.compile the loss",
    "train.augment": "reserved: no built-in learner augments yet (changes only the config digest)",
    "train.max_grad_norm": "clip the gradient norm (0: off)",
    "train.episodes_per_step": "episodes a step, the global batch of episodic learners",
    "train.sync_batchnorm": "SyncBatchNorm across processes (GPUs)",
    "eval.distance": "euclidean or cosine nearest-prototype scoring",
    "eval.head": "classifier head scoring the episodes: nearest_prototype, simpleshot, logistic or finetune",
    "eval.head_norm": "features a head sees: UN, L2N, CL2N (SimpleShot's centred L2), or default (the head's own)",
    "eval.head_C": "logistic head: inverse L2 penalty (scikit-learn's C; RFS uses 1)",
    "eval.head_classifier": "finetune head: linear or cosine classifier",
    "eval.head_epochs": "finetune head: passes over the support set",
    "eval.head_lr": "finetune head: SGD learning rate",
    "eval.head_batch": "finetune head: support images a minibatch",
    "eval.head_weight_decay": "finetune head: SGD weight decay",
    "eval.head_seed": "finetune head: seed of its initialisation and minibatch order",
    "eval.batch_episodes": "episodes scored at once (memory bound; results do not depend on it)",
}


def unknown_key_message(key: str) -> str:
    """`unknown config key 'x'; did you mean 'y'?` (see `fewshot list keys`)."""
    close = difflib.get_close_matches(key, VALID_KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see `fewshot list keys`"
    return f"unknown config key {key!r}{hint}"


# Counts that must be 1 or more: 0 or less would train nothing, draw no episode, or divide by zero.
POSITIVE_KEYS = {
    "episodes.ways", "episodes.shots", "episodes.queries", "batch.classes", "batch.per_class", "train.steps",
    "train.val_episodes", "train.val_ways", "train.val_shots", "train.val_queries", "train.checkpoint_every",
    "train.log_every", "train.episodes_per_step", "eval.batch_episodes", "eval.head_epochs", "eval.head_batch",
    "backbone.hidden", "head.dim", "head.hidden", "optim.step_size",
}

# --- The range of each key: key -> check(value) returning what is wrong (a phrase) or None. -------------
# Every resolved config passes here (each value as it is set, and whole configs read from run folders).
# A key without an entry is only type-checked, so keys added elsewhere need no entry to work; add one
# (a line below, or CHECKS["my.key"] = ... beside the code that adds the key) to refuse bad values early.
Check = Callable[[Any], "str | None"]


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be {low} or more"


def finite(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A finite number in [low, high], either end open (excluded) on request."""
    def check(v):
        if not math.isfinite(v):
            return "must be a finite number"
        if low is not None and (v < low or (low_open and v == low)):
            return f"must be {'above' if low_open else 'at least'} {low}"
        if high is not None and (v > high or (high_open and v == high)):
            return f"must be {'below' if high_open else 'at most'} {high}"
        return None
    return check


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def matches(pattern: str, example: str) -> Check:
    return lambda v: None if re.fullmatch(pattern, v) else f"must look like {example}"


DISTANCES = ("euclidean", "cosine")
CHECKS: dict[str, Check] = {
    **{key: at_least(1) for key in POSITIVE_KEYS},
    "name": lambda v: None if v.strip() and "/" not in v and "\0" not in v else "must be a non-empty name without /",
    "seed": at_least(0),  # numpy's generators refuse negative seeds
    "train.keep_every": lambda v: None if v >= 0 else "must be 0 (keep no step) or a step interval",
    "train.val_every": at_least(0),
    "train.max_grad_norm": finite(0.0),
    "train.device": matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),
    "train.precision": one_of("fp32", "bf16", "fp16"),
    "optim.name": one_of("adam", "sgd"),
    "optim.lr": finite(0.0, low_open=True),
    "optim.weight_decay": finite(0.0),
    "optim.gamma": finite(0.0, 1.0, low_open=True),
    "optim.momentum": finite(0.0, 1.0, high_open=True),
    "backbone.dropblock": finite(0.0, 1.0, high_open=True),
    "loss.distance": one_of(*DISTANCES),
    "eval.distance": one_of(*DISTANCES),
    "episodes.protocol": one_of("fixed", "within-parent"),
    "loss.margin": finite(0.0),
    "loss.center_margin": finite(0.0),
    "loss.scale": finite(0.0, low_open=True),
    "loss.temperature": finite(0.0, low_open=True),
    "loss.center_lambda": finite(0.0),
    "loss.center_momentum": finite(0.0, 1.0, high_open=True),
    "loss.center_lr_scale": finite(0.0),
    "loss.smoothing": finite(0.0, 1.0, high_open=True),
    "cir.p": finite(0.0, 1.0),
    "cir.alpha": finite(0.0),
    "cir.memory_momentum": finite(0.0, 1.0, high_open=True),
}


def check_value(key: str, value: Any, where: str) -> None:
    """Refuse a value outside its key's range (CHECKS); keys without a check pass."""
    check = CHECKS.get(key)
    problem = check(value) if check is not None else None
    if problem:
        raise FewshotError(f"{where}: {key} {problem}, got {value!r}")


def check_config(config: dict, where: str) -> None:
    """Check every value of a whole config (e.g. a run folder's config.json) against CHECKS and the types of
    DEFAULTS. Keys this version does not know, and keys missing from an older config, are let through."""
    for key, value in _flatten(config).items():
        if key not in VALID_KEYS or value is None:
            continue
        if key in LAYOUT_KEYS and value == "auto":  # true, false or "auto" (fewshot.layout)
            continue
        default = VALID_KEYS[key]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if isinstance(default, bool) != isinstance(value, bool) or (
                numeric and not isinstance(value, (int, float))) or (isinstance(default, str) and not isinstance(value, str)):
            raise FewshotError(f"{where}: {key} should be a {type(default).__name__}, found {value!r}; "
                               "the file was edited or damaged")
        check_value(key, value, where)


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
        raise FewshotError(f"{where}: {unknown_key_message(key)}")
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = _coerce(key, value, where)
    if key in POSITIVE_KEYS and node[leaf] < 1:
        raise FewshotError(f"{where}: {key} must be a positive integer, got {node[leaf]}")
    check_value(key, node[leaf], where)


def with_defaults(config: dict) -> dict:
    """A saved config with the keys it lacks (an older version's, or an edited one) taken from DEFAULTS,
    so readers find every key they use; what it holds is kept."""
    merged = copy.deepcopy(DEFAULTS)
    for key, value in _flatten(config).items():
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = value
    return merged


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


def apply_overrides(config: dict, overrides: list[str] | dict | None, where: str = "override") -> dict:
    """Set `key=value` strings or a {key: value} dict on `config`; errors begin with `where`."""
    if not overrides:
        return config
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, value in items:
        _set(config, key, value, where)
    return config


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise FewshotError(f"override {text!r} is not key=value (for example optim.lr=0.001)")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def flat(config: dict) -> dict[str, Any]:
    return _flatten(config)


# Keys added after runs and records existed: a config without one meant its default, so at its default a key
# is left out of the digest (older runs and records keep theirs) and counts as absent when resuming.
LATE_KEYS = {"cir.apply_to": "all", "episodes.protocol": "fixed", "backbone.model": "", "backbone.weights": "", "backbone.pretrained": False,
             "backbone.input_size": 0}
# Keys that only write extra files (they change no step): never in the digest.
_DIGEST_IGNORED = {"keep_every", "tensorboard"}


def config_digest(config: dict) -> str:
    """A short stable hash of a resolved config (for naming runs and finding a finished one to reuse).

    Head keys (HEAD_KEYS) count only where they differ from their defaults: records of two heads differ,
    configs older than heads keep their digest."""
    import hashlib

    # train.keep_every and train.tensorboard only write extra files: they change no step, and configs older
    # than them lack them.
    if isinstance(config.get("train"), dict) and _DIGEST_IGNORED & set(config["train"]):
        config = {**config, "train": {k: v for k, v in config["train"].items() if k not in _DIGEST_IGNORED}}
    for key, default in LATE_KEYS.items():
        section, leaf = key.split(".")
        if isinstance(config.get(section), dict) and config[section].get(leaf, default) == default:
            config = {**config, section: {k: v for k, v in config[section].items() if k != leaf}}
    if isinstance(config.get("eval"), dict):  # head switches at their defaults: runs and records keep their digests
        defaults = DEFAULTS["eval"]
        config = {**config, "eval": {k: v for k, v in config["eval"].items()
                                     if not (k in HEAD_KEYS and v == defaults[k])}}
    text = json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_digest(config: dict) -> str:
    """The digest of what a run trains: the config without its head keys (any head scores the same run)."""
    if isinstance(config.get("eval"), dict):
        config = {**config, "eval": {k: v for k, v in config["eval"].items() if k not in HEAD_KEYS}}
    return config_digest(config)


def with_default_head(config: dict) -> dict:
    """A copy of `config` with the head keys at their defaults: what a run is trained (and saved) with."""
    config = copy.deepcopy(config)
    if isinstance(config.get("eval"), dict):
        config["eval"].update({k: DEFAULTS["eval"][k] for k in HEAD_KEYS})
    return config


def head_overrides(eval_settings: dict | None) -> dict[str, Any]:
    """`eval.*` overrides naming a head and its switches (only the head keys of `eval_settings`)."""
    return {f"eval.{k}": v for k, v in (eval_settings or {}).items() if k in HEAD_KEYS}
