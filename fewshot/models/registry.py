"""`register_backbone` / `create_backbone(name, **kw)`: the CLI, `fewshot list` and tests enumerate these."""
from __future__ import annotations

from torch import nn

from fewshot.registry import Registry

BACKBONES: Registry = Registry("backbone", "fewshot.models.backbones")
register_backbone = BACKBONES.register


def create_backbone(name: str, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build a backbone; every backbone maps (B, C, H, W) float images to (B, D) features and has `.out_dim(h, w)`."""
    return BACKBONES.get(name)(in_channels=in_channels, **kwargs)


def list_backbones() -> list[str]:
    return BACKBONES.names()
