"""`fewshot eval --run RUN --episodes FILE...`, `--backbone pixels|timm:MODEL --data DIR` or `--embeddings FILE`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fewshot.commands.common import add_backbone_source, add_device, note_random_weights, parse_backbone
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run (or raw pixels) on fixed episode files",
                       description="Embed the needed images once with the model in eval mode, classify every "
                                   "query by its nearest prototype, and write one JSON result record per "
                                   "episode file: mean, ci95 (1.96*std/sqrt(n), ddof 0), per-episode accuracies "
                                   "and provenance. Evaluating the same run, checkpoint, head and episode file "
                                   "into the same folder again replaces its record (atomically) and says so.")
    # --run-dir: torchrun's own parser takes `--run` for an abbreviation of its --run-path (docs/distributed.md)
    p.add_argument("--run", "--run-dir", dest="run", help="run folder from `fewshot train`")
    add_backbone_source(p)
    p.add_argument("--embeddings", metavar="FILE",
                   help="score the episodes over an embedding file (`fewshot embed`, or any tool's: "
                        "docs/embeddings.md) instead of a run")
    p.add_argument("--distance", choices=["euclidean", "cosine"],
                   help="nearest-prototype distance for --backbone and --embeddings (default: euclidean, or the "
                        "exporting run's)")
    p.add_argument("--data", help="prepared store (default: the one the run was trained on)")
    p.add_argument("--episodes", nargs="+", required=True, help="episode file(s)")
    p.add_argument("--out", help="result .json (one episode file) or a results folder (default: print only)")
    p.add_argument("--checkpoint", default="best",
                   help="best (the best validation step; the last one without validation), last, or step-N: "
                        "the weights of step N, kept by train.keep_every (default: best)")
    p.add_argument("--method", help="method name in the record (default: the config's name)")
    p.add_argument("--force", action="store_true", help="replace an --out .json file that is not a result record")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Under `torchrun ... -m fewshot eval` every rank runs this: they share the work, rank 0 alone reports."""
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot import distributed
    from fewshot.device import resolve_device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = distributed.local_device(resolve_device(args.device))
        with distributed.process_group(device):
            return _run(argparse.Namespace(**{**vars(args), "device": str(device)}))
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.episodes.files import load_episode_file
    from fewshot.evaluate.run import evaluate_embeddings, evaluate_pixels, evaluate_pretrained, evaluate_run
    from fewshot.results.records import check_record_target, check_results_folder, record_summary, write_record_reporting
    from fewshot import distributed
    if sum(map(bool, (args.run, args.backbone, args.embeddings))) != 1:
        raise FewshotError("give exactly one of --run RUN_DIR, --backbone pixels|timm:MODEL or --embeddings FILE")
    kind, model = parse_backbone(args) if args.backbone else ("", "")
    if not args.backbone and (args.weights or args.pretrained or args.input_size):
        raise FewshotError("--weights, --pretrained and --input-size are for --backbone timm:MODEL")
    if args.embeddings and args.data:
        raise FewshotError("--embeddings needs no --data: the embedding file holds every embedding")
    if args.run and args.distance:
        raise FewshotError("--distance is for --backbone and --embeddings; a run scores with its config's "
                           "eval.distance")
    files = [load_episode_file(f) for f in args.episodes]
    if args.out and distributed.is_writer():  # before the work, so an unwritable folder costs nothing
        check_results_folder(Path(args.out).parent if Path(args.out).suffix == ".json" else args.out)
        check_record_target(args.out, args.force)
    if args.embeddings:
        records = evaluate_embeddings(args.embeddings, files, args.device, args.method, args.distance)
    elif args.backbone:
        if not args.data:
            raise FewshotError(f"--backbone {args.backbone} needs --data, the prepared store")
        if kind == "timm":
            note_random_weights(args)
            records = evaluate_pretrained(model, args.data, files, args.device, args.weights or "", args.pretrained,
                                          args.input_size, args.precision, args.method,
                                          args.distance or "euclidean")
        else:
            records = evaluate_pixels(args.data, files, args.device, args.distance or "euclidean")
    else:
        records = evaluate_run(args.run, files, args.data, args.device, args.precision, args.checkpoint, args.method)
    if not distributed.is_writer():
        return 0
    if args.out and Path(args.out).suffix == ".json" and len(records) > 1:
        raise FewshotError("--out names one .json file but several episode files were given; pass a folder")
    for record in records:
        where = ""
        if args.out:
            path, replaced = write_record_reporting(record, args.out, args.force)
            same = "the file" if Path(args.out).suffix == ".json" else "the earlier record of this same evaluation"
            where = f" -> {path}" + (f" (replaced {same})" if replaced else "")
        print(f"{record['method']} {record['dataset']} {record['setting']} ({record['n_episodes']} episodes): "
              f"{record_summary(record)}{where}")
    return 0
