"""`fewshot embed --run RUN | --backbone pixels|timm:MODEL --data DIR --split test --out FILE.npz`."""
from __future__ import annotations

import argparse
from pathlib import Path

from fewshot.commands.common import add_backbone_source, add_device, note_random_weights, parse_backbone
from fewshot.errors import FewshotError


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="export a split's embeddings (a run, a timm model or pixels) to a file",
                       description="Embed every image of a split the way `fewshot eval` does and write an "
                                   "embedding file (.npz): float32 embeddings, each row named by class name and "
                                   "image rank, with the split's classes and counts, the store checksum, where "
                                   "the features came from, and a sha256. `fewshot eval --embeddings FILE` "
                                   "scores episode files over it. Format: docs/embeddings.md.")
    p.add_argument("--run", "--run-dir", dest="run", help="run folder from `fewshot train`")
    add_backbone_source(p)
    p.add_argument("--data", help="prepared store (default for --run: the one the run was trained on)")
    p.add_argument("--split", default="test", help="the split to embed (default: test)")
    p.add_argument("--out", required=True, help="embedding file to write (.npz)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--checkpoint", default="best", help="for --run: best, last or step-N (default: best)")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.evaluate.export import export_pixels, export_pretrained, export_run
    if bool(args.run) == bool(args.backbone):
        raise FewshotError("give exactly one of --run RUN_DIR or --backbone pixels|timm:MODEL")
    kind, model = parse_backbone(args) if args.backbone else ("", "")
    if args.run and (args.weights or args.pretrained or args.input_size):
        raise FewshotError("--weights, --pretrained and --input-size are for --backbone timm:MODEL")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise FewshotError(f"--out {out} must end in .npz (an embedding file is a numpy archive)")
    if out.exists() and not args.force:
        raise FewshotError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.is_dir():
        raise FewshotError(f"--out {out} is a folder; give a file name ending in .npz")
    if args.backbone and not args.data:
        raise FewshotError(f"--backbone {args.backbone} needs --data, the prepared store")
    if kind == "timm":
        note_random_weights(args)
        file = export_pretrained(model, args.data, args.split, args.device, args.weights or "", args.pretrained,
                                 args.input_size, args.precision)
    elif kind == "pixels":
        file = export_pixels(args.data, args.split, args.device)
    else:
        file = export_run(args.run, args.split, args.data, args.device, args.precision, args.checkpoint)
    try:
        file.save(out)
    except OSError as exc:
        raise FewshotError(f"cannot write {out} ({exc.strerror}); choose another --out") from None
    meta = file.meta
    print(f"{meta['source'].get('method')} {meta['dataset']} {meta['split']}: {len(file)} embeddings of "
          f"dimension {file.embeddings.shape[1]}, {len(meta['class_names'])} classes -> {out} "
          f"(sha256 {file.checksum[:12]})")
    return 0
