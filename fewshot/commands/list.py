"""`fewshot list`: everything the registries hold."""
from __future__ import annotations

import argparse

from fewshot.config import list_configs


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list method configs, learners, backbones, losses, heads and dataset formats")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.data.registry import list_formats
    from fewshot.learners import list_learners
    from fewshot.models import list_backbones
    print("method configs:", ", ".join(list_configs()))
    print("learners:      ", ", ".join(list_learners()))
    print("backbones:     ", ", ".join(list_backbones()))
    try:
        from fewshot.losses.registry import list_losses

        print("losses:        ", ", ".join(list_losses()))
    except ImportError:
        pass
    from fewshot.heads import list_heads

    print("heads:         ", ", ".join(list_heads()), "(eval.head / --head)")
    print("datasets:      ", ", ".join(f.name for f in list_formats()))
    return 0
