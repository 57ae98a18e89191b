"""Losses: one class (an nn.Module with `forward`) a file, each registered by name with `register_loss`."""
from fewshot.losses.registry import check_loss_name, create_loss, list_losses, register_loss  # noqa: F401
