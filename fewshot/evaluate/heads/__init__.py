"""Classifier heads over cached embeddings: nearest prototype, SimpleShot, logistic regression, fine-tuning."""
from fewshot.evaluate.heads.registry import create_head, head_from_config, list_heads, register_head

__all__ = ["create_head", "head_from_config", "list_heads", "register_head"]
