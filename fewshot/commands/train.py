"""`fewshot train --config METHOD --data DIR --out RUN [key=value ...]`."""
from __future__ import annotations

import argparse
import os

from fewshot.commands.common import add_device, positive_int
from fewshot.config import list_configs, load_config


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a learner on a prepared store into a run folder",
                       description="Train a method config (see `fewshot list`) or a .toml file. key=value pairs "
                                   "override any config field, e.g. optim.lr=0.0005 train.steps=5000. The run "
                                   "folder keeps the resolved config, a CSV log, and checkpoints.")
    p.add_argument("--config", default="protonet", help=f"method name ({', '.join(list_configs())}) or a .toml file")
    p.add_argument("--data", required=True, help="prepared store folder")
    p.add_argument("--out", required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped or killed run from its last checkpoint, with the same config (e.g. "
                        "--config RUN/config.json --resume); a larger train.steps=N extends a finished run")
    p.add_argument("--nproc", type=positive_int, default=1, help="processes (torch.distributed; see README)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: a plain line every few log rows instead (what output to a file gets)")
    p.add_argument("--quiet", action="store_true", help="print nothing while training, only the final line")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.train.loop import train
    config = load_config(args.config, args.overrides)
    if args.precision:
        config["train"]["precision"] = args.precision
    if args.nproc > 1:
        from fewshot.launch import launch

        return launch(args)
    progress = False if args.quiet else "lines" if args.no_progress else True
    summary = train(config, args.data, args.out, resume=args.resume, progress=progress, device_name=args.device)
    best = summary["best"]
    val = f", best val {best['val_acc']:.2f}% at step {best['step']}" if best.get("val_acc") is not None else ""
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process gets here; one line is enough
        print(f"trained {config['name']} for {summary['steps']} steps into {args.out}{val}")
    return 0
