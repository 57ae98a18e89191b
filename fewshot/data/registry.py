"""Dataset formats: `register_format` a reader; `fewshot prepare --list` and the tests enumerate them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from fewshot.registry import Registry


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset name for `fewshot prepare`, the source variants it detects, and its converter.

    `prepare(src, out, force=..., **options)` writes a store and returns its split manifests;
    `variants` maps each detected variant to a one-line description of the files it expects.
    """

    name: str
    description: str
    prepare: Callable[..., dict]
    variants: dict[str, str] = field(default_factory=dict)
    needs_src: bool = True


FORMATS: Registry = Registry("dataset", "fewshot.data.formats")


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    FORMATS.register(fmt.name)(fmt)
    return fmt


def get_format(name: str) -> DatasetFormat:
    return FORMATS.get(name)


def list_formats() -> list[DatasetFormat]:
    return [FORMATS.get(n) for n in FORMATS.names()]
