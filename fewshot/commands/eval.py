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
                                   "query with the head (default: nearest prototype; --head), and write one "
                                   "JSON result record per "
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
    p.add_argument("--head", help="classifier head that scores the episodes from the embeddings: "
                                  "nearest_prototype (default), simpleshot, logistic, finetune (`fewshot list`)")
    p.add_argument("settings", nargs="*", metavar="eval.KEY=VALUE",
                   help="head switches, e.g. eval.head_C=0.1 eval.head_norm=L2N (fewshot/config.py DEFAULTS)")
    p.add_argument("--layout", choices=["config", "auto", "channels_last", "nchw"], default="config",
                   help="memory layout of the images while embedding: the run's train.channels_last (config, "
                        "the default), auto (the faster on this machine, timed once and cached), or one given")
    add_device(p)
    p.set_defaults(func=run)
    from fewshot.commands.bench import _IntermixedParser

    p.__class__ = _IntermixedParser  # eval.KEY=VALUE may follow the options


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
    settings = _head_settings(args)
    files = [load_episode_file(f) for f in args.episodes]
    if args.out and distributed.is_writer():  # before the work, so an unwritable folder costs nothing
        check_results_folder(Path(args.out).parent if Path(args.out).suffix == ".json" else args.out)
        check_record_target(args.out, args.force)
    if args.embeddings:
        records = evaluate_embeddings(args.embeddings, files, args.device, args.method, args.distance,
                                      eval_settings=settings)
    elif args.backbone:
        if not args.data:
            raise FewshotError(f"--backbone {args.backbone} needs --data, the prepared store")
        if kind == "timm":
            note_random_weights(args)
            records = evaluate_pretrained(model, args.data, files, args.device, args.weights or "", args.pretrained,
                                          args.input_size, args.precision, args.method,
                                          args.distance or "euclidean", eval_settings=settings)
        else:
            records = evaluate_pixels(args.data, files, args.device, args.distance or "euclidean",
                                      eval_settings=settings)
    else:
        records = evaluate_run(args.run, files, args.data, args.device, args.precision, args.checkpoint, args.method,
                               eval_settings=settings, layout=args.layout)
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
        head = "" if record["head"]["name"] == "nearest_prototype" and not settings else f" [{record['head']['label']}]"
        print(f"{record['method']}{head} {record['dataset']} {record['setting']} ({record['n_episodes']} episodes): "
              f"{record_summary(record)}{where}")
    return 0


def _head_settings(args: argparse.Namespace) -> dict | None:
    """--head and eval.KEY=VALUE as `eval` settings (head keys only; a bad key or value is a one-line error)."""
    from fewshot.config import HEAD_KEYS, VALID_KEYS, _split_override

    settings: dict = {}
    # `--episodes a.npz b.npz eval.head_C=0.1`: --episodes takes every word after it; key=value words are settings.
    given = [e for e in args.episodes if "=" in e and not Path(e).exists()]
    args.episodes = [e for e in args.episodes if e not in given]
    for text in [*(getattr(args, "settings", None) or []), *given]:
        key, value = _split_override(text)
        if not key.startswith("eval.") or key[5:] not in HEAD_KEYS:
            if key not in VALID_KEYS:
                raise FewshotError(f"unknown setting {key!r}; `fewshot eval` takes the head keys: "
                                   + ", ".join(f"eval.{k}" for k in HEAD_KEYS))
            raise FewshotError(f"{key} is not a head setting; `fewshot eval` takes only "
                               + ", ".join(f"eval.{k}" for k in HEAD_KEYS))
        settings[key[5:]] = value
    if args.head:
        settings["head"] = args.head
    if settings:  # check names and values now, before any embedding
        from fewshot.config import DEFAULTS, apply_overrides, head_overrides
        from fewshot.evaluate.heads import head_from_config

        check = {"eval": dict(DEFAULTS["eval"])}
        apply_overrides(check, head_overrides(settings))
        head_from_config(check["eval"])
    return settings or None
