"""The learner interface: `embed(images)` for evaluation, `loss(batch)` for training."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.device import to_float_images
from fewshot.episodes.source import Batch
from fewshot.models.heads import EmbeddingHead
from fewshot.models.registry import create_backbone


class Learner(nn.Module):
    """Backbone + embedding head. Subclasses set `batch_kind` and implement `loss`."""

    batch_kind = "episode"

    def __init__(self, config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int) -> None:
        super().__init__()
        self.config = config
        backbone_cfg = dict(config["backbone"])
        name = backbone_cfg.pop("name")
        self.backbone = create_backbone(name, in_channels=in_channels, **_backbone_kwargs(name, backbone_cfg))
        feature_dim = self.backbone.out_dim(*image_size)
        head = config["head"]
        self.head = EmbeddingHead(feature_dim, head["kind"], head["dim"], head["hidden"], head["normalize"])
        self.embedding_dim = self.head.out_dim
        self.n_classes = n_classes

    def embed(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Embeddings of float images (B, C, H, W) in [0, 1], or of uint8 store images (B, H, W, C), a tensor
        or numpy array, converted as evaluation converts them (fewshot.device.to_float_images)."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.array(images))  # a copy: store images are read-only memory maps
        if images.dtype == torch.uint8:
            images = to_float_images(images, next(self.parameters()).device)
        return self.head(self.backbone(images))

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of one batch and its metrics (0-d tensors, detached, on the batch's device).

        Metrics stay tensors so that a GPU step never waits on the host; the loop reads them when it logs.
        """
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The head's output before its L2 normalisation (what CIR perturbs)."""
        return self.head.net(self.backbone(images))

    def normalized(self, features: torch.Tensor) -> torch.Tensor:
        """Features as the head outputs them: L2-normalised when the head normalises, else unchanged."""
        return F.normalize(features, dim=-1) if self.head.normalize else features

    def finish(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training embeddings: CIR moves features (when the learner has one), then the head normalises."""
        cir = getattr(self, "cir", None)
        if cir is not None:
            features = cir(features, labels)
        return self.normalized(features)

    def state_for_checkpoint(self) -> dict:
        """Extra state beyond parameters and buffers (none by default; buffers already hold banks)."""
        return {}


def _backbone_kwargs(name: str, cfg: dict) -> dict:
    """Pass only the switches a backbone understands (conv4 has no DropBlock, resnet12 has)."""
    import inspect

    from fewshot.models.registry import BACKBONES

    accepted = inspect.signature(BACKBONES.get(name).__init__).parameters
    return {k: v for k, v in cfg.items() if k in accepted}
