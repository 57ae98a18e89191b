"""`fewshot prepare omniglot`: the original archives, Vinyals split with rotations, 28x28."""
from pathlib import Path

from fewshot.data.omniglot import download, prepare_omniglot
from fewshot.data.registry import DatasetFormat, register_format


def _prepare(src, out, force: bool = False, download_missing: bool = False, progress: bool = True, workers: int = 2,
             lake_split: bool = False, **_ignored) -> dict:
    if download_missing:
        download(Path(src))
    return prepare_omniglot(src, out, force=force, progress=progress, workers=workers, lake=lake_split)


register_format(DatasetFormat(
    name="omniglot",
    description="Omniglot (Lake 2015), Vinyals split, 4 rotations a character, 28x28, nearest resize as Snell et al.",
    prepare=_prepare,
    variants={
        "original-zips": "images_background.zip + images_evaluation.zip (as torchvision and learn2learn download)",
        "extracted-folders": "images_background/ + images_evaluation/ holding <Alphabet>/characterNN/XXXX_YY.png",
        "lake-split": "either of the above with --lake-split: splits background (30 alphabets, 4 rotations a "
                      "character) and evaluation (20 alphabets, upright), Lake et al.'s split",
    },
))
