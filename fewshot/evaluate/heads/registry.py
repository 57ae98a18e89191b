"""`register_head` / `create_head(name, **options)` / `list_heads()`: classifiers that score episodes from cached
embeddings. `head_from_config(config["eval"])` builds the head a config names, with its switches."""
from __future__ import annotations

from fewshot.registry import Registry

HEADS: Registry = Registry("head", "fewshot.evaluate.heads")
register_head = HEADS.register


def create_head(name: str, **options):
    """A head by registered name; `options` are its constructor's keyword arguments (see each head's file)."""
    return HEADS.get(name)(**options)


def list_heads() -> list[str]:
    return HEADS.names()


def head_from_config(eval_config: dict):
    """The head named by `eval.head`, with the options it reads from the other `eval.*` keys."""
    cls = HEADS.get(eval_config["head"])
    return cls(**{option: eval_config[key] for option, key in cls.CONFIG_KEYS.items() if key in eval_config})
