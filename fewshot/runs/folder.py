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

from fewshot.errors import FewshotError
from fewshot.learners import create_learner
from fewshot.models.initial_weights import restoring_checkpoint
from fewshot.runs.checkpoint import load_checkpoint, load_model_state


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
    config_file = run / "config.json"
    if not config_file.exists():
        raise FewshotError(f"{run} is not a run folder (no config.json); train one with `fewshot train`")
    config = json.loads(config_file.read_text())
    summary = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    name = checkpoint_name(which)
    ckpt_path = run / "checkpoints" / f"{name}.pt"
    if name.startswith("step-") and not ckpt_path.is_file():
        kept = sorted(int(p.stem[5:]) for p in (run / "checkpoints").glob("step-*.pt") if p.stem[5:].isdigit())
        raise FewshotError(f"{run} kept no weights of {which} (kept steps: {', '.join(map(str, kept)) or 'none'}; "
                           "train with train.keep_every=N to keep every N-th step)")
    state = load_checkpoint(ckpt_path)
    if not (run / "input.json").exists():
        raise FewshotError(f"{run} has no input.json describing its input shape; train again")
    meta = json.loads((run / "input.json").read_text())
    h, w, c = meta["image_shape"]
    with restoring_checkpoint():  # every weight comes from the checkpoint; a timm backbone skips its start weights
        learner = create_learner(config, c, (h, w), meta["n_classes"])
    load_model_state(learner, state["model"], ckpt_path)
    learner.eval()
    if device is not None:
        learner.to(device)
    return learner, config, {**summary, "checkpoint_step": state.get("step")}
