"""`register_learner` / `create_learner(config, ...)`."""
from __future__ import annotations

from fewshot.registry import Registry

LEARNERS: Registry = Registry("learner", "fewshot.learners")
register_learner = LEARNERS.register


def create_learner(config: dict, in_channels: int, image_size: tuple[int, int], n_classes: int):
    learner_class = LEARNERS.get(config["learner"])
    _check_model_fits(learner_class, config, in_channels, image_size, n_classes)
    return learner_class(config, in_channels=in_channels, image_size=image_size, n_classes=n_classes)


def _check_model_fits(learner_class, config: dict, in_channels: int, image_size: tuple[int, int],
                      n_classes: int) -> None:
    """Build the model on torch's meta device first (no memory, no random numbers drawn) and refuse it when
    its weights, their gradients and Adam's two moments cannot fit: a huge backbone.hidden or head.dim
    would otherwise be allocated, and initialised, until the OOM killer ends the process without a word."""
    import torch

    from fewshot.errors import FewshotError
    from fewshot.memory import check_fits

    rng = torch.get_rng_state()
    try:
        with torch.device("meta"):
            shape = learner_class(config, in_channels=in_channels, image_size=image_size, n_classes=n_classes)
        nbytes = sum(p.numel() * p.element_size() for p in shape.parameters())
        nbytes += sum(b.numel() * b.element_size() for b in shape.buffers())
    except FewshotError:
        raise
    except Exception:  # a model that cannot be built on meta is built for real, unchecked
        return
    finally:
        torch.set_rng_state(rng)
    check_fits(4 * nbytes, "the model (weights, gradients and optimizer state)",
               "lower backbone.hidden, head.dim or head.hidden")


def list_learners() -> list[str]:
    return LEARNERS.names()
