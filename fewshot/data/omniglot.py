"""Omniglot (Lake et al. 2015) in the original archive layout, prepared with the Vinyals split.

Reads `images_background.zip` and `images_evaluation.zip` (or their extracted folders), laid out as
`images_<set>/<Alphabet>/characterNN/XXXX_YY.png`: 105x105 1-bit PNGs, white background. Each character
of the Vinyals split lists (packaged with fewshot, from Snell et al.'s code) becomes four classes, one
per 90-degree rotation, named `Alphabet/characterNN/rotDDD`; its parent in the class hierarchy is its
alphabet, read from the name (fewshot.data.store.StoreSplit.parents).

Preprocessing follows Snell et al.'s code exactly: rotate the 1-bit image with PIL, then resize it to
28x28, which PIL does by nearest neighbour for a mode-'1' image; ink = 1 (stored as 255). A smoothing
resize would raise the raw-pixel floor by about 7 points and make results incomparable. (Snell's code
also transposes every image; a fixed transpose of all images changes no accuracy, so we do not.)
"""
from __future__ import annotations

import re
import zipfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from fewshot.errors import FewshotError

ARCHIVES = ("images_background", "images_evaluation")
SPLIT_DIR = Path(__file__).parent / "splits"
ROTATIONS = (0, 90, 180, 270)
_PNG = re.compile(r"(?:^|/)images_(?:background|evaluation)/([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")
DOWNLOAD_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{name}.zip"


LAKE_SPLITS = ("background", "evaluation")


def lake_split(split: str, drawings: dict[str, list], archive_of: dict[str, str]) -> list[str]:
    """Class names of Lake's split: background (the 30 background alphabets, every 90-degree rotation a
    class, as Vinyals' training classes) or evaluation (the 20 evaluation alphabets, upright only, as in
    Lake's one-shot runs)."""
    chars = sorted(c for c in drawings if archive_of[c] == f"images_{split}")
    rotations = ROTATIONS if split == "background" else (0,)
    return [f"{c}/rot{r:03d}" for c in chars for r in rotations]


def vinyals_split(split: str) -> list[str]:
    """Class names (with rotation) of a Vinyals split: train, val or test; trainval = train + val."""
    if split == "trainval":
        return vinyals_split("train") + vinyals_split("val")
    path = SPLIT_DIR / f"omniglot_vinyals_{split}.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_sources(src: Path, archive_of: dict[str, str] | None = None) -> dict[str, list[tuple[int, bytes | Path]]]:
    """character key 'Alphabet/characterNN' -> [(drawing number, png bytes or path)]; `archive_of`, if given,
    is filled with each character's archive (images_background or images_evaluation)."""
    archive_of = {} if archive_of is None else archive_of
    drawings: dict[str, list] = defaultdict(list)
    found = []
    for name in ARCHIVES:
        archive, folder = src / f"{name}.zip", src / name
        if folder.is_dir():
            found.append(folder)
            for png in folder.rglob("*.png"):
                m = _PNG.search(png.as_posix())
                if m:
                    drawings[f"{m[1]}/{m[2]}"].append((int(m[4]), png))
                    archive_of[f"{m[1]}/{m[2]}"] = name
        elif archive.is_file():
            found.append(archive)
            try:
                with zipfile.ZipFile(archive) as zf:
                    for info in zf.infolist():
                        m = _PNG.search(info.filename)
                        if m:
                            drawings[f"{m[1]}/{m[2]}"].append((int(m[4]), zf.read(info)))
                            archive_of[f"{m[1]}/{m[2]}"] = name
            except zipfile.BadZipFile:
                raise FewshotError(f"{archive} is not a readable zip archive; download it again") from None
    if not found:
        raise FewshotError(
            f"{src} holds neither images_background.zip / images_evaluation.zip nor their extracted folders; "
            "point --src at the folder that has them (or add --download)"
        )
    return drawings


def _preprocess(item: tuple[bytes | Path, tuple[int, ...]]) -> np.ndarray:
    """One drawing -> uint8 (len(rotations), 28, 28): rotate, nearest-resize, ink = 255."""
    source, rotations = item
    image = Image.open(BytesIO(source) if isinstance(source, bytes) else source)
    image.load()
    if image.mode != "1":
        image = image.convert("1")
    out = []
    for degrees in rotations:
        small = image.rotate(degrees).resize((28, 28))
        out.append(np.where(np.asarray(small, dtype=bool), 0, 255).astype(np.uint8))
    return np.stack(out)


def download(src: Path) -> None:
    import urllib.request

    src.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVES:
        target = src / f"{name}.zip"
        if target.exists():
            continue
        url = DOWNLOAD_URL.format(name=name)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except OSError as exc:
            raise FewshotError(f"could not download {url} ({exc}); fetch the archive by hand into {src}") from None
        tmp = target.with_suffix(".zip.part")
        tmp.write_bytes(data)
        tmp.replace(target)


def prepare_omniglot(src, out, force: bool = False, splits=("train", "val", "test", "trainval"),
                     workers: int = 2, progress: bool = True, lake: bool = False) -> dict:
    """Prepare the Vinyals splits, or with `lake` Lake's background and evaluation splits (`lake_split`)."""
    from tqdm import tqdm

    from fewshot.data.store import StoreWriter

    src = Path(src)
    if not src.exists():
        raise FewshotError(f"Omniglot source {src} does not exist; give the folder holding images_background.zip")
    archive_of: dict[str, str] = {}
    drawings = _read_sources(src, archive_of)
    if lake:
        splits = LAKE_SPLITS
        missing = [name for name in ARCHIVES if name not in set(archive_of.values())]
        if missing:
            raise FewshotError(f"{src}: Lake's split needs both archives; {missing[0]} is missing")
    variant = ("omniglot-original-archives(lake,background rot4 / evaluation upright,28x28,nearest)" if lake
               else "omniglot-original-archives(vinyals,rot4,28x28,nearest)")
    with StoreWriter(out, "omniglot", variant, force) as writer:
        for split in splits:
            classes = lake_split(split, drawings, archive_of) if lake else vinyals_split(split)
            by_char: dict[str, list[int]] = defaultdict(list)
            for name in classes:
                char, rot = name.rsplit("/", 1)
                by_char[char].append(int(rot[3:]))
            missing = [c for c in by_char if len(drawings.get(c, ())) == 0]
            if missing:
                raise FewshotError(
                    f"{src}: character {missing[0]} of the Vinyals {split} split is not in the archives "
                    f"({len(missing)} missing); the archives are incomplete"
                )
            items, keys = [], []
            for char, rots in by_char.items():
                for number, source in sorted(drawings[char], key=lambda d: d[0]):
                    items.append((source, tuple(rots)))
                    keys.append((char, tuple(rots)))
            name_index = {n: i for i, n in enumerate(classes)}
            labels = [name_index[f"{c}/rot{r:03d}"] for c, rots in keys for r in rots]
            # No categories written: the alphabet, each class's parent, is the first part of its name
            # (StoreSplit.parents), which keeps the split checksums of every earlier Omniglot store.
            sink = writer.split_sink(split, labels, classes, (28, 28, 1))
            position = 0
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(_preprocess, items, chunksize=256)
                for rotated in tqdm(results, total=len(items), disable=not progress, desc=f"omniglot {split}",
                                    unit="img"):
                    n = len(rotated)
                    sink.put(np.arange(position, position + n), rotated[..., None])
                    position += n
            writer.finish_split(split, sink)
    return writer.splits
