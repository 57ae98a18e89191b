"""A pretrained model's own input settings, applied to the store's images inside the model.

The store holds uint8 images at their prepared size (Omniglot 28x28 grey, miniImageNet 84x84 RGB) and every
verb feeds backbones float images in [0, 1] (fewshot.device.to_float_images). A pretrained network expects
its own size, channel count, mean and std; doing that conversion here, as the first layer of the backbone,
means embedding, evaluation and training need no transform pipeline and the store is used unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewshotError

# timm's interpolation names; F.interpolate has no lanczos/hamming/box, bicubic is their nearest kin.
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "lanczos": "bicubic",
          "hamming": "bilinear", "box": "bilinear", "random": "bilinear"}


class ImageInput(nn.Module):
    """(B, C, H, W) in [0, 1] -> (B, channels, *size), normalised: grey repeated, resized, (x - mean) / std.

    The whole image is resized to `size` (no centre crop: few-shot images are already cropped to their
    object, and timm's crop_pct would cut up to an eighth off each side of a 28x28 character). Resizing is
    antialiased like torchvision's tensor resize; bicubic results are clamped to [0, 1] as PIL's uint8
    resize is, so overshoot at sharp edges does not reach the normalisation.
    """

    def __init__(self, in_channels: int, channels: int, size: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], interpolation: str = "bilinear") -> None:
        super().__init__()
        if in_channels not in (1, channels):
            raise FewshotError(f"the model takes {channels}-channel images; the store's have {in_channels} "
                               "(only grey images are converted, by repeating them)")
        if len(mean) != channels or len(std) != channels:
            raise FewshotError(f"the model's mean {tuple(mean)} and std {tuple(std)} are not {channels} values")
        self.in_channels = in_channels
        self.channels = channels
        self.size = (int(size[0]), int(size[1]))
        self.mode = _MODES.get(interpolation, "bilinear")
        # Not persistent: they come from the model's config, so checkpoints stay plain network weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.channels} channels, size={self.size}, mode={self.mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if tuple(x.shape[-2:]) != self.size:
            if self.mode == "nearest":
                x = F.interpolate(x, size=self.size, mode="nearest")
            else:
                x = F.interpolate(x, size=self.size, mode=self.mode, align_corners=False, antialias=True)
                if self.mode == "bicubic":
                    x = x.clamp(0.0, 1.0)
        return (x - self.mean) / self.std
