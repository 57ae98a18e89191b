"""Whether a backbone being built will have its weights replaced by a run's checkpoint.

A backbone that starts from a weight file or the hub (timm: backbone.weights, backbone.pretrained) loads
them when a run is trained. When the run is rebuilt from its checkpoint, every weight comes from the
checkpoint instead, so reading the starting weights again would only cost time, and would fail where the
file has since moved or the hub is unreachable. Code that restores a checkpoint builds the learner inside
`restoring_checkpoint()`; backbones ask `restoring()`.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_restoring: contextvars.ContextVar[bool] = contextvars.ContextVar("fewshot_restoring_checkpoint", default=False)


@contextlib.contextmanager
def restoring_checkpoint() -> Iterator[None]:
    token = _restoring.set(True)
    try:
        yield
    finally:
        _restoring.reset(token)


def restoring() -> bool:
    return _restoring.get()
