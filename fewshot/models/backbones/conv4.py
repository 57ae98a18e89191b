"""Conv-4 (Vinyals et al. 2016; Snell et al. 2017): 4 x [conv3x3, BatchNorm, ReLU, maxpool 2], flattened."""
from __future__ import annotations

import torch
from torch import nn

from fewshot.models.registry import register_backbone


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register_backbone("conv4")
class Conv4(nn.Module):
    """28x28 input gives a 64-d embedding, 84x84 a 1600-d one (64 x 5 x 5)."""

    def __init__(self, in_channels: int = 3, hidden: int = 64, out_channels: int = 64) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, out_channels),
        )
        self.out_channels = out_channels

    def out_dim(self, height: int, width: int) -> int:
        for _ in range(4):
            height, width = height // 2, width // 2
        return self.out_channels * height * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).flatten(1)
