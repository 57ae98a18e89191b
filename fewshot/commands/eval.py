"""`fewshot eval --run RUN --episodes FILE...` or `fewshot eval --backbone pixels --data DIR --episodes FILE...`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fewshot.commands.common import add_device
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run (or raw pixels) on fixed episode files",
                       description="Embed the needed images once with the model in eval mode, classify every "
                                   "query by its nearest prototype, and write one JSON result record per "
                                   "episode file: mean, ci95 (1.96*std/sqrt(n), ddof 0), per-episode accuracies "
                                   "and provenance.")
    # --run-dir: torchrun's own parser takes `--run` for an abbreviation of its --run-path (docs/distributed.md)
    p.add_argument("--run", "--run-dir", dest="run", help="run folder from `fewshot train`")
    p.add_argument("--backbone", choices=["pixels"], help="evaluate raw flattened pixels instead of a run")
    p.add_argument("--data", help="prepared store (default: the one the run was trained on)")
    p.add_argument("--episodes", nargs="+", required=True, help="episode file(s)")
    p.add_argument("--out", help="result .json (one episode file) or a results folder (default: print only)")
    p.add_argument("--checkpoint", default="best",
                   help="best (the best validation step; the last one without validation), last, or step-N: "
                        "the weights of step N, kept by train.keep_every (default: best)")
    p.add_argument("--method", help="method name in the record (default: the config's name)")
    p.add_argument("--layout", choices=["config", "auto", "channels_last", "nchw"], default="config",
                   help="memory layout of the images while embedding: the run's train.channels_last (config, "
                        "the default), auto (the faster on this machine, timed once and cached), or one given")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Under `torchrun ... -m fewshot eval` every rank runs this: they share the work, rank 0 alone reports."""
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.device import resolve_device
    from fewshot.train import distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = distributed.local_device(resolve_device(args.device))
        with distributed.process_group(device):
            return _run(argparse.Namespace(**{**vars(args), "device": str(device)}))
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.episodes.files import load_episode_file
    from fewshot.evaluate.run import evaluate_pixels, evaluate_run
    from fewshot.results.records import check_results_folder, write_record
    from fewshot.train import distributed
    if bool(args.run) == bool(args.backbone):
        raise FewshotError("give exactly one of --run RUN_DIR or --backbone pixels")
    files = [load_episode_file(f) for f in args.episodes]
    if args.out and distributed.is_writer():  # before the work, so an unwritable folder costs nothing
        check_results_folder(Path(args.out).parent if Path(args.out).suffix == ".json" else args.out)
    if args.backbone:
        if not args.data:
            raise FewshotError("--backbone pixels needs --data, the prepared store")
        records = evaluate_pixels(args.data, files, args.device)
    else:
        records = evaluate_run(args.run, files, args.data, args.device, args.precision, args.checkpoint, args.method,
                               args.layout)
    if not distributed.is_writer():
        return 0
    if args.out and Path(args.out).suffix == ".json" and len(records) > 1:
        raise FewshotError("--out names one .json file but several episode files were given; pass a folder")
    for record in records:
        where = f" -> {write_record(record, args.out)}" if args.out else ""
        print(f"{record['method']} {record['dataset']} {record['setting']} ({record['n_episodes']} episodes): "
              f"{record['mean']:.2f} +- {record['ci95']:.2f}{where}")
    return 0
