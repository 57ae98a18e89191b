"""Backbones (a registry) and embedding heads."""
from fewshot.models.registry import create_backbone, list_backbones, register_backbone  # noqa: F401
