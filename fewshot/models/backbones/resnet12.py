"""ResNet-12 (Lee et al. 2019, MetaOptNet; Tian et al. 2020, RFS): 4 residual blocks of 64-160-320-640 channels.

Each block: 3 x [conv3x3, BatchNorm, LeakyReLU(0.1)] (no activation after the third before the sum), a
1x1 conv + BatchNorm shortcut, LeakyReLU, maxpool 2. Global average pooling gives a 640-d embedding at any
input size of at least 16x16 (84x84 -> 5x5 -> 640; 28x28 -> 1x1 -> 640).

Regularisation as in RFS when `dropblock` (a drop rate) > 0: DropBlock (Ghiasi et al. 2018; block size 5,
at most the feature map) after blocks 3 and 4, plain dropout after blocks 1 and 2. RFS also ramps the drop
rate up linearly over 40,000 steps; here the rate is constant (our runs are far shorter than that ramp).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError
from fewshot.models.registry import register_backbone

CHANNELS = (64, 160, 320, 640)


class DropBlock(nn.Module):
    """Zero out square blocks of a feature map in training; rescale to keep the expected activation."""

    def __init__(self, drop_rate: float, block_size: int = 5) -> None:
        super().__init__()
        self.drop_rate, self.block_size = drop_rate, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0.0:
            return x
        size = min(self.block_size, x.shape[-1], x.shape[-2])
        valid_h, valid_w = x.shape[-2] - size + 1, x.shape[-1] - size + 1
        # gamma: the rate of block centres that drops about drop_rate of the units (Ghiasi et al. eq. 1).
        gamma = self.drop_rate / size**2 * x.shape[-2] * x.shape[-1] / (valid_h * valid_w)
        centres = (torch.rand(x.shape[0], x.shape[1], valid_h, valid_w, device=x.device) < gamma).to(x.dtype)
        # A drawn point is a block's top-left corner; pooling the padded map spreads it over its block.
        dropped = F.max_pool2d(F.pad(centres, (size - 1,) * 4), size, stride=1)
        keep = 1.0 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, drop: nn.Module) -> None:
        super().__init__()
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels)]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


@register_backbone("resnet12")
class ResNet12(nn.Module):
    def __init__(self, in_channels: int = 3, dropblock: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropblock < 1.0:
            raise FewshotError(f"backbone.dropblock = {dropblock} must be a drop rate in [0, 1)")
        blocks, previous = [], in_channels
        for i, channels in enumerate(CHANNELS):
            drop = DropBlock(dropblock) if i >= 2 else nn.Dropout(dropblock)
            blocks.append(ResidualBlock(previous, channels, drop))
            previous = channels
        self.blocks = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")

    def out_dim(self, height: int, width: int) -> int:
        if min(height, width) < 16:
            raise FewshotError(f"resnet12 needs images of at least 16x16 (4 halvings), got {height}x{width}")
        return CHANNELS[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))
