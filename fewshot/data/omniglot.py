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

import os
import re
import zipfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from fewshot.errors import FewshotError
from fewshot.lifeline import die_with_parent

ARCHIVES = ("images_background", "images_evaluation")
SPLIT_DIR = Path(__file__).parent / "splits"
ROTATIONS = (0, 90, 180, 270)
_PNG = re.compile(r"(?:^|/)images_(background|evaluation)/([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")
# An Omniglot PNG is a 105x105 1-bit image of a few hundred bytes; anything far larger is not a drawing,
# and reading it whole (a small zip can inflate to gigabytes) would only exhaust memory.
MAX_ENTRY_BYTES = 1 << 20
MAX_SIDE = 1000
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


def _entry(archive: Path, name: str, size: int, path: str) -> re.Match | None:
    """The layout match of one archive entry (or file), None for files that are not drawings (skipped).

    Refused with a one-line error naming the entry: a path that climbs out (`..`, absolute), a drawing of
    the other set (images_evaluation/ inside images_background.zip), one larger than MAX_ENTRY_BYTES."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or ".." in parts:
        raise FewshotError(f"{archive}: entry {path!r} points outside the archive's folders; the archive is not a "
                           "clean Omniglot download: download it again")
    m = _PNG.search(path)
    if m is None:
        return None
    if f"images_{m[1]}" != name:
        raise FewshotError(f"{archive}: entry {path!r} belongs to images_{m[1]}, not {name}; the archive is not a "
                           "clean Omniglot download")
    if size > MAX_ENTRY_BYTES:
        raise FewshotError(f"{archive}: entry {path!r} is {size:,} bytes, not an Omniglot drawing (a few hundred "
                           "bytes); the archive is damaged or not Omniglot")
    return m


def _read_sources(src: Path, archive_of: dict[str, str] | None = None
                  ) -> dict[str, list[tuple[int, bytes | Path, str]]]:
    """character key 'Alphabet/characterNN' -> [(drawing number, png bytes or path, entry name)]; `archive_of`,
    if given, is filled with each character's archive (images_background or images_evaluation)."""
    archive_of = {} if archive_of is None else archive_of
    drawings: dict[str, list] = defaultdict(list)
    found = []
    for name in ARCHIVES:
        archive, folder = src / f"{name}.zip", src / name
        if folder.is_dir():
            found.append(folder)
            for png in folder.rglob("*.png"):
                m = _entry(folder, name, png.stat().st_size, png.relative_to(src).as_posix())
                if m:
                    drawings[f"{m[2]}/{m[3]}"].append((int(m[5]), png, str(png)))
                    archive_of[f"{m[2]}/{m[3]}"] = name
        elif archive.is_file():
            found.append(archive)
            try:
                with zipfile.ZipFile(archive) as zf:
                    for info in zf.infolist():
                        m = _entry(archive, name, info.file_size, info.filename)
                        if m:
                            with zf.open(info) as entry:  # at most the bound, whatever the header claims
                                data = entry.read(MAX_ENTRY_BYTES + 1)
                            drawings[f"{m[2]}/{m[3]}"].append((int(m[5]), data, f"{archive}:{info.filename}"))
                            archive_of[f"{m[2]}/{m[3]}"] = name
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
                raise FewshotError(f"{archive} is not a readable zip archive ({exc}); download it again") from None
    if not found:
        raise FewshotError(
            f"{src} holds neither images_background.zip / images_evaluation.zip nor their extracted folders; "
            "point --src at the folder that has them (or add --download)"
        )
    return drawings


def _preprocess(item: tuple[bytes | Path, tuple[int, ...], str]) -> np.ndarray:
    """One drawing -> uint8 (len(rotations), 28, 28): rotate, nearest-resize, ink = 255."""
    source, rotations, name = item
    try:
        image = Image.open(BytesIO(source) if isinstance(source, bytes) else source)
        if max(image.size) > MAX_SIDE:  # read from the header, before decoding any pixel
            raise FewshotError(f"{name}: a {image.width}x{image.height} image, not a 105x105 Omniglot drawing; the "
                               "archive is damaged or not Omniglot")
        image.load()
    except FewshotError:
        raise
    except Exception as exc:  # PIL raises many kinds (OSError, SyntaxError, ValueError, DecompressionBombError)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FewshotError(f"{name}: not a readable PNG drawing ({reason}); the archive is damaged: download it "
                           "again") from None
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
                for number, source, entry in sorted(drawings[char], key=lambda d: d[0]):
                    items.append((source, tuple(rots), entry))
                    keys.append((char, tuple(rots)))
            name_index = {n: i for i, n in enumerate(classes)}
            labels = [name_index[f"{c}/rot{r:03d}"] for c, rots in keys for r in rots]
            # No categories written: the alphabet, each class's parent, is the first part of its name
            # (StoreSplit.parents), which keeps the split checksums of every earlier Omniglot store.
            sink = writer.split_sink(split, labels, classes, (28, 28, 1))
            position = 0
            with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                results = pool.map(_preprocess, items, chunksize=256)
                for rotated in tqdm(results, total=len(items), disable=not progress, desc=f"omniglot {split}",
                                    unit="img"):
                    n = len(rotated)
                    sink.put(np.arange(position, position + n), rotated[..., None])
                    position += n
            writer.finish_split(split, sink)
    return writer.splits
