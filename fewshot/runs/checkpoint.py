"""Checkpoints written atomically and loaded with weights_only=True (nothing in them is executed)."""
from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import torch

from fewshot.atomic import write_bytes_atomic
from fewshot.errors import FewshotError


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise FewshotError(f"checkpoint {path} does not exist; train first or pass the right --run")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL (\S+)", str(exc))
        if named:  # the file names a function or class: unpickling it could run code
            raise FewshotError(f"checkpoint {path} holds {named[1]}, not only tensors and plain values; refused, "
                               "since loading it could run code: it is not a fewshot checkpoint") from None
        raise FewshotError(f"checkpoint {path} is truncated or not a fewshot checkpoint ({_first(exc)}); "
                           "resume from another checkpoint or train again") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise FewshotError(f"checkpoint {path} is truncated or not a fewshot checkpoint ({_first(exc)}); "
                           "resume from another checkpoint or train again") from None


def _first(exc: Exception) -> str:
    """The first sentence only: torch's messages run on for several lines of advice."""
    return str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # torch's first line is only "Error(s) in loading state_dict for X:"; the next names the first misfit.
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0]).rstrip(". ")
        first = first if len(first) <= 200 else first[:200] + "..."  # a missing-keys line lists every key
        raise FewshotError(f"checkpoint {path} does not fit this model ({first}); "
                           "it was saved with a different architecture or config") from None
