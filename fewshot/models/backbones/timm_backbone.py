"""Any timm model as a backbone: `backbone.name = "timm"`, `backbone.model = <timm model name>`.

The embedding is timm's pooled feature (the model built with num_classes=0). Weights come from a local file
(`backbone.weights`: safetensors or a torch state dict, read without unpickling code), from the Hugging Face
hub (`backbone.pretrained = true`, where it is reachable), or are random (training from scratch). The
model's own input settings (timm.data.resolve_model_data_config: input size, mean, std, interpolation) are
applied by an ImageInput layer in front of it, so the store's images are used unchanged; grey images are
repeated to 3 channels. `backbone.input_size = N` resizes to N x N instead (cheap training on small images).

timm is an optional dependency (`pip install 'fewshot[timm]'`); it is imported only when such a backbone is
built, so the registry, `fewshot list` and every other backbone work without it.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from fewshot.errors import FewshotError
from fewshot.models.initial_weights import restoring
from fewshot.models.preprocess import ImageInput
from fewshot.models.registry import register_backbone


def import_timm():
    try:
        import timm
    except ImportError:
        raise FewshotError("backbone.name=timm needs the timm package: pip install 'fewshot[timm]'") from None
    return timm


@register_backbone("timm")
class TimmBackbone(nn.Module):
    def __init__(self, in_channels: int = 3, model: str = "", weights: str = "", pretrained: bool = False,
                 input_size: int = 0) -> None:
        super().__init__()
        timm = import_timm()
        if not model:
            raise FewshotError("backbone.name=timm needs backbone.model=NAME, a timm model name such as resnet50 "
                               "or vit_small_patch14_dinov2.lvd142m (timm.list_models() names them all)")
        if not timm.is_model(model):
            close = difflib.get_close_matches(model, timm.list_models(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FewshotError(f"backbone.model {model!r} is not a timm model{hint}; timm.list_models() names them")
        if weights and pretrained:
            raise FewshotError("give backbone.weights=FILE or backbone.pretrained=true, not both")
        if input_size < 0:
            raise FewshotError(f"backbone.input_size must be 0 (the model's own) or a size in pixels, got {input_size}")
        self.model_name = model
        self.weights = str(weights)
        kwargs = {}
        try:
            cfg = timm.models.get_pretrained_cfg(model)
        except RuntimeError as exc:  # an architecture with an unknown pretrained tag
            raise FewshotError(f"backbone.model {model!r}: {exc}") from None
        if input_size and cfg is not None and cfg.fixed_input_size:
            kwargs["img_size"] = input_size  # a ViT's position embedding is built for its input size
        # A run rebuilt from its checkpoint gets every weight from there (fewshot.models.initial_weights).
        fetch = pretrained and not restoring()
        self.net = _create(timm, model, fetch, kwargs)
        # On torch's meta device (fewshot.learners.registry measures a model there first) there is nothing to load.
        on_meta = any(p.is_meta for p in self.net.parameters())
        if weights and not restoring() and not on_meta:
            load_weights(self.net, weights, model)
        data_config = timm.data.resolve_model_data_config(self.net)
        channels, height, width = data_config["input_size"]
        if input_size:
            height = width = input_size
        self.data_config = {"input_size": [channels, height, width], "mean": list(data_config["mean"]),
                            "std": list(data_config["std"]), "interpolation": data_config["interpolation"]}
        self.input = ImageInput(in_channels, channels, (height, width), data_config["mean"], data_config["std"],
                                data_config["interpolation"])
        # The pooled feature: after a model's pre-logits layer where it has one (MobileNetV3's conv_head).
        self.dim = int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)

    def out_dim(self, height: int, width: int) -> int:
        return self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input(x))


def _create(timm, model: str, pretrained: bool, kwargs: dict) -> nn.Module:
    if not pretrained:
        return timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    reason = _hub_problem(timm, model)
    if reason is None:
        try:
            return timm.create_model(model, pretrained=True, num_classes=0, **kwargs)
        except Exception as exc:  # whatever the hub client raises offline (OSError, HTTP errors, its own types)
            reason = _first_sentence(exc)
    raise FewshotError(f"backbone.pretrained=true could not get the weights of {model} from the Hugging Face hub "
                       f"({reason}); download them where the hub is reachable (the hub's model.safetensors, or "
                       f"torch.save(timm.create_model({model!r}, pretrained=True).state_dict(), FILE)) and pass "
                       "backbone.weights=FILE instead")


_HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_problem(timm, model: str) -> str | None:
    """Why the hub cannot give `model`'s weights now, or None: try it (they are cached, or the hub resolves).

    Offline, the hub client retries for about a minute and logs every retry before it fails; a name lookup
    that fails says the same at once.
    """
    import socket
    from urllib.parse import urlparse

    cfg = timm.models.get_pretrained_cfg(model)
    repo = (getattr(cfg, "hf_hub_id", None) or "").split("@")[0]
    if not repo:
        return None  # weights at a plain URL (torch.hub): its download fails fast by itself
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return "the huggingface_hub package is not installed"
    if any(isinstance(try_to_load_from_cache(repo, name), str) for name in _HUB_FILES):
        return None
    if constants.HF_HUB_OFFLINE:
        return f"HF_HUB_OFFLINE is set and {repo} is not in the local cache"
    host = urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return f"{host} cannot be reached from here"
    return None


def _first_sentence(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return (text.split(". ")[0][:200] or type(exc).__name__).rstrip(".")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch.save file, read safely (no code is unpickled).

    timm's loader does the reading: safetensors, torch.load(weights_only=True), checkpoints that wrap the
    weights ({"state_dict": ...}, {"model": ...}, EMA weights) and DDP/compile "module." prefixes.
    """
    from timm.models import load_state_dict

    path = Path(path)
    if not path.is_file():
        raise FewshotError(f"backbone.weights {path} does not exist; give a .safetensors file or a torch state dict")
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # safetensors, zip, pickle and torch errors all mean "not a weight file"
        raise FewshotError(f"backbone.weights {path} is not a safetensors file or a torch state dict of tensors "
                           f"({type(exc).__name__}: {_first_sentence(exc)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FewshotError(f"backbone.weights {path} does not hold a state dict (names -> tensors)")
    return state


def load_weights(net: nn.Module, path: str | Path, model: str) -> None:
    """Load a weight file into a timm model built with num_classes=0; its classifier's weights are dropped.

    Every other tensor must match: a missing or misshapen weight is an error, never a silent random layer.
    """
    state = read_state_dict(path)
    expected = net.state_dict()
    classifiers = (net.pretrained_cfg or {}).get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    state = {k: v for k, v in state.items()
             if k in expected or not any(k.startswith(c + ".") for c in classifiers)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or misshapen:
        what = "; ".join(f"{label} {len(keys)} (e.g. {keys[0]!r})" for label, keys in
                         (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if keys)
        raise FewshotError(f"backbone.weights {path} does not fit timm's {model} ({what}); save the weights of "
                           f"timm.create_model({model!r}) (its state_dict) or use the hub's model.safetensors")
    net.load_state_dict(state, strict=True)
