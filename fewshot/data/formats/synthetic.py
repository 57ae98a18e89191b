"""`fewshot prepare synthetic`: the generated stroke-glyph set (no source files)."""
from fewshot.data.registry import DatasetFormat, register_format
from fewshot.data.synthetic import prepare_synthetic


def _prepare(src, out, force: bool = False, seed: int = 0, **_ignored) -> dict:
    return prepare_synthetic(out, seed=seed, force=force)


register_format(DatasetFormat(
    name="synthetic",
    description="generated stroke glyphs, 28x28 grayscale, 64/16/20 classes x 60 images; deterministic from --seed",
    prepare=_prepare,
    variants={"generated": "no source files; --src is not used"},
    needs_src=False,
))
