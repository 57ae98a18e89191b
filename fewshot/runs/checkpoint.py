"""Checkpoints written atomically and loaded with weights_only=True (nothing in them is executed).

Each checkpoint carries a sha256 of its state (every tensor's dtype, shape and bytes, every plain value),
checked on load: torch's zip format does not check its members' CRCs, so a flipped byte in a weight would
otherwise load and evaluate to a wrong accuracy without a word. Checkpoints older than the digest load as
before.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path

import torch

from fewshot.atomic import write_bytes_atomic
from fewshot.errors import FewshotError


DIGEST_KEY = "sha256"


def state_digest(state) -> str:
    """sha256 over a checkpoint state: tensors by dtype, shape and bytes; containers in order; plain values."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key, item in value.items():
                digest.update(repr(key).encode())
                feed(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{value!r}".encode())

    feed(state)
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save({**state, DIGEST_KEY: state_digest(state)}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise FewshotError(f"checkpoint {path} does not exist; train first or pass the right --run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
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
    if not isinstance(state, dict):
        raise FewshotError(f"checkpoint {path} holds a {type(state).__name__}, not a fewshot checkpoint")
    if DIGEST_KEY in state:  # older checkpoints have none
        saved = state.pop(DIGEST_KEY)
        if saved != state_digest(state):
            raise FewshotError(f"checkpoint {path} fails its sha256 check: its contents were modified or damaged "
                               "after it was written; use another checkpoint or train again")
    if "model" not in state or not isinstance(state["model"], dict):
        raise FewshotError(f"checkpoint {path} holds no model weights; it is not a fewshot checkpoint")
    return state


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
