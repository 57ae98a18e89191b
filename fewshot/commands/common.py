"""Arguments several verbs share."""
from __future__ import annotations

import argparse


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="where to compute: auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                        help="mixed precision autocast on GPU (bf16/fp16); fp32 is exact (default: the config's)")


def _int_at_least(text: str, low: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Counts: 1 or more."""
    return _int_at_least(text, 1, "a positive integer")


def add_backbone_source(parser: argparse.ArgumentParser) -> None:
    """--backbone pixels | timm:MODEL with the timm model's weights: an embedding with no training run."""
    parser.add_argument("--backbone", metavar="pixels|timm:MODEL",
                        help="raw flattened pixels, or a frozen timm model (any timm model name) instead of a run")
    parser.add_argument("--weights", metavar="FILE",
                        help="the timm model's weights: .safetensors or a torch state dict (loaded without "
                             "unpickling code)")
    parser.add_argument("--pretrained", action="store_true",
                        help="the timm model's pretrained weights from the Hugging Face hub (where reachable)")
    parser.add_argument("--input-size", type=int, default=0, metavar="N",
                        help="resize images to N x N for the timm model (default 0: the model's own input size)")


def parse_backbone(args: argparse.Namespace) -> tuple[str, str]:
    """('pixels', '') or ('timm', MODEL) from --backbone; refuses timm switches without a timm model."""
    from fewshot.errors import FewshotError

    text = args.backbone or ""
    kind, _, model = text.partition(":")
    if text == "pixels":
        kind, model = "pixels", ""
    elif kind != "timm" or not model:
        raise FewshotError(f"--backbone {text!r} is not pixels or timm:MODEL (a timm model name, e.g. timm:resnet50)")
    if kind != "timm" and (args.weights or args.pretrained or args.input_size):
        raise FewshotError("--weights, --pretrained and --input-size are for --backbone timm:MODEL")
    if args.input_size < 0:
        raise FewshotError(f"--input-size must be 0 (the model's own) or a size in pixels, got {args.input_size}")
    return kind, model


def note_random_weights(args: argparse.Namespace) -> None:
    """A timm model without --weights or --pretrained is measured with random weights: say so (it is allowed)."""
    if not (args.weights or args.pretrained):
        import sys

        print(f"fewshot: note: {args.backbone} has random weights (pass --weights FILE or --pretrained for "
              "trained ones)", file=sys.stderr)


def non_negative_int(text: str) -> int:
    """Seeds and limits: 0 or more (numpy's generators refuse negative seeds)."""
    return _int_at_least(text, 0, "0 or more")
