"""Reading a run folder: its resolved config, its summary, its checkpoint names, and its trained learner.

Training writes run folders (fewshot/train/loop.py); evaluation, bench and ablate read them through this
module, so evaluation never imports the training loop.

A run folder holds `config.json` (the resolved config), `input.json` (image shape and class count the model
was built for), `log.csv`, `checkpoints/last.pt` (everything needed to resume), `checkpoints/best.pt`
(weights of the best validation step), optional `checkpoints/step-N.pt` (train.keep_every) and `run.json`
(status and provenance).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from fewshot.config import check_config, with_defaults
from fewshot.errors import FewshotError
from fewshot.learners import create_learner
from fewshot.models.initial_weights import restoring_checkpoint
from fewshot.runs.checkpoint import load_checkpoint, load_model_state


RUN_FILE_KEYS = {  # what readers need from each JSON file of a run folder, and its type
    "config.json": {"name": str, "seed": int, "learner": str, "backbone": dict, "head": dict, "train": dict,
                    "eval": dict},
    "run.json": {"status": str},
    "input.json": {"image_shape": list, "n_classes": int},
}


def read_run_file(run: str | Path, name: str) -> dict:
    """A run folder's config.json, run.json or input.json, checked: a JSON object with the fields readers use
    (of the right types). Anything else is a one-line error naming the file."""
    path = Path(run) / name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FewshotError(f"{path} is missing; {Path(run)} is not a complete run folder: train it again") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not readable JSON ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                           "the run folder is damaged: train it again") from None
    if not isinstance(data, dict):
        raise FewshotError(f"{path} holds a {type(data).__name__}, not a JSON object; the run folder is damaged")
    for key, kind in RUN_FILE_KEYS.get(name, {}).items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise FewshotError(f"{path}: {key!r} should be a {kind.__name__}, found {data.get(key)!r}; the run "
                               "folder is damaged or was edited: train it again")
    if name == "input.json":
        shape = data["image_shape"]
        if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape) \
                or data["n_classes"] < 1:
            raise FewshotError(f"{path}: image_shape {shape!r} / n_classes {data['n_classes']!r} do not describe "
                               "an input; the run folder is damaged: train it again")
    return data


def checkpoint_name(which: str) -> str:
    """'best', 'last' or 'step-N' (N >= 1, a step kept with train.keep_every), checked; the file's stem."""
    if which in ("best", "last"):
        return which
    number = which.removeprefix("step-")
    if number != which and number.isdigit() and int(number) > 0:
        return f"step-{int(number)}"
    raise FewshotError(f"checkpoint {which!r} is not best, last or step-N (a step kept with train.keep_every)")


def load_run(run: str | Path, which: str = "best", device: torch.device | None = None):
    """Rebuild a trained learner from a run folder: (learner in eval mode, config, run summary).

    `which` is best (the best validation step, or the last step of a run without validation), last, or
    step-N, the weights of step N kept by train.keep_every.
    """
    run = Path(run)
    name = checkpoint_name(which)  # the argument first, before any file is read
    config_file = run / "config.json"
    if not config_file.exists():
        raise FewshotError(f"{run} is not a run folder (no config.json); train one with `fewshot train`")
    config = read_run_file(run, "config.json")
    check_config(config, str(config_file))
    config = with_defaults(config)  # keys added since it was trained read as their defaults
    summary = read_run_file(run, "run.json") if (run / "run.json").exists() else {}
    ckpt_path = run / "checkpoints" / f"{name}.pt"
    if name.startswith("step-") and not ckpt_path.is_file():
        kept = sorted(int(p.stem[5:]) for p in (run / "checkpoints").glob("step-*.pt") if p.stem[5:].isdigit())
        raise FewshotError(f"{run} kept no weights of {which} (kept steps: {', '.join(map(str, kept)) or 'none'}; "
                           "train with train.keep_every=N to keep every N-th step)")
    state = load_checkpoint(ckpt_path)
    if not (run / "input.json").exists():
        raise FewshotError(f"{run} has no input.json describing its input shape; train again")
    meta = read_run_file(run, "input.json")
    h, w, c = meta["image_shape"]
    try:
        with restoring_checkpoint():  # every weight comes from the checkpoint; a timm backbone skips its start weights
            learner = create_learner(config, c, (h, w), meta["n_classes"])
    except (KeyError, TypeError, ValueError) as exc:  # an older or edited config.json lacks what the learner reads
        raise FewshotError(f"{config_file} does not describe a model this version builds ({type(exc).__name__}: "
                           f"{exc}); train the run again") from None
    load_model_state(learner, state["model"], ckpt_path)
    learner.eval()
    if device is not None:
        learner.to(device)
    return learner, config, {**summary, "checkpoint_step": state.get("step")}
