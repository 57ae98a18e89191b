"""`fewshot list [keys]`: everything the registries hold, or every config key with its default and help."""
from __future__ import annotations

import argparse

from fewshot.config import KEY_HELP, VALID_KEYS, flat, list_configs, load_config


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list method configs, learners, backbones, losses, heads and dataset formats; "
                                    "`list keys`: every config key",
                       description="Without an argument: the method configs, learners, backbones, losses, heads "
                                   "and dataset formats fewshot knows. `fewshot list keys`: every config key that "
                                   "key=value overrides, ablation grids and .toml files may set, with its default "
                                   "and a line of help (--config METHOD adds that method's value).")
    p.add_argument("what", nargs="?", choices=["keys"], help="keys: the config keys instead of the registries")
    p.add_argument("--config", metavar="METHOD",
                   help="with keys: also show the values of this method config (name or .toml/.json file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.what == "keys":
        return _keys(args.config)
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
    from fewshot.evaluate.heads import list_heads

    print("heads:         ", ", ".join(list_heads()), "(eval.head / --head)")
    print("datasets:      ", ", ".join(f.name for f in list_formats()))
    print("config keys:    fewshot list keys")
    return 0


def _keys(method: str | None) -> int:
    values = flat(load_config(method)) if method else {}
    width = max(len(k) for k in VALID_KEYS)
    for key, default in VALID_KEYS.items():
        shown = f"{default!r}" + (f" ({method}: {values[key]!r})" if method and values[key] != default else "")
        print(f"{key:<{width}}  {shown:<20}  {KEY_HELP.get(key, '')}")
    return 0
