"""`register_learner` / `create_learner(config, ...)`."""
from __future__ import annotations

from fewshot.registry import Registry

LEARNERS: Registry = Registry("learner", "fewshot.learners")
register_learner = LEARNERS.register


def create_learner(config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int):
    return LEARNERS.get(config["learner"])(config, in_channels=in_channels, image_size=image_size, n_classes=n_classes)


def list_learners() -> list[str]:
    return LEARNERS.names()
