"""ResNet-18 (He et al. 2016) from torchvision, untrained, adapted to small images (as for CIFAR).

The 7x7 stride-2 stem and its max-pool would shrink 28x28 or 84x84 inputs too early, so the stem is a 3x3
stride-1 conv and there is no max-pool; the final fc is removed: global average pooling gives 512-d.
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.models.registry import register_backbone


@register_backbone("resnet18")
class ResNet18(nn.Module):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        # Imported here, not at the top: torchvision pulls in torch._dynamo (about 2 s at start-up), and
        # every verb that builds any backbone loads this module through the registry.
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net

    def out_dim(self, height: int, width: int) -> int:
        return 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
