"""`register_loss` / `create_loss(config, ...)` / `list_losses()`: one loss class a file, found by name.

A loss class's constructor arguments are named like the `loss.*` config keys it uses (`margin`, `mining`,
`scale`, ...); `create_loss` passes it exactly those keys, plus the context a learner knows and the config
does not (`n_classes`, `dim`).
"""
from __future__ import annotations

import inspect
from typing import Iterable

from torch import nn

from fewshot.errors import FewshotError
from fewshot.registry import Registry

LOSSES: Registry = Registry("loss", "fewshot.losses")
register_loss = LOSSES.register


def check_loss_name(config: dict, allowed: Iterable[str], learner: str = "") -> None:
    """Refuse a loss.name the learner does not train with (one line naming the ones it does)."""
    allowed = tuple(allowed)
    name = config["loss"]["name"]
    if name not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise FewshotError(f"learner {learner or config.get('learner')!r} trains with loss.name = {choices}, "
                           f"but the config says loss.name = {name!r}; set loss.name")


def create_loss(config: dict, allowed: Iterable[str] | None = None, learner: str = "", **context) -> nn.Module:
    """Build the loss named by `config["loss"]["name"]`.

    `allowed`: the loss names the calling learner can train with; another name is a user error.
    `context`: constructor arguments that come from the learner (for example `n_classes`, `dim`).
    """
    settings = config["loss"]
    name = settings["name"]
    if allowed is not None:
        check_loss_name(config, allowed, learner)
    loss_class = LOSSES.get(name)
    accepted = inspect.signature(loss_class.__init__).parameters
    offered = {**{k: v for k, v in settings.items() if k != "name"}, **context}
    return loss_class(**{k: v for k, v in offered.items() if k in accepted})


def list_losses() -> list[str]:
    return LOSSES.names()
