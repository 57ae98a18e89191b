"""A frozen pretrained backbone (timm) as an embedding function, and the config its records carry."""
from __future__ import annotations


import torch
from torch import nn

from fewshot.data.store import Store, sha256_file
from fewshot.episodes.files import EpisodeFile
from fewshot.models.registry import create_backbone


def build_pretrained(model: str, in_channels: int, weights: str = "", pretrained: bool = False,
                     input_size: int = 0, device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """(backbone in eval mode on `device`, config for records): the timm model, its weights and input settings.

    The config names the weight file by path and sha256, so a record says exactly which weights it measured.
    """
    backbone = create_backbone("timm", in_channels=in_channels, model=model, weights=str(weights or ""),
                               pretrained=pretrained, input_size=input_size).eval()
    if device is not None:
        backbone.to(device)
    config = {
        "name": f"timm:{model}",
        "backbone": {
            "name": "timm",
            "model": model,
            "weights": str(weights) if weights else "",
            "weights_sha256": sha256_file(weights) if weights else None,
            "pretrained": bool(pretrained),
            "input_size": int(input_size),
            "data_config": backbone.data_config,
            "embedding_dim": backbone.dim,
        },
    }
    return backbone, config


def store_channels(store: Store, episode_files: list[EpisodeFile] | None = None) -> int:
    """The channel count of the store's images (every split has the same), read from a split the work uses."""
    wanted = [f.meta["split"] for f in episode_files or []]
    name = next((n for n in wanted if n in store.split_names), store.split_names[0])
    return int(store.split(name).image_shape[-1])
