"""Image decoding: RGB order, exact PNG values, named resize filters, ordered parallel decoding, clear errors."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot.data.images import FILTERS, decode_image, decode_stream, image_header, resize_array
from fewshot.errors import FewshotError

sys.path.insert(0, str(Path(__file__).parent / "formats"))
from fixtures import JPEG_TOLERANCE, png_bytes, solid, write_jpeg  # noqa: E402


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_png_bytes_and_array_decode_to_exact_rgb():
    image = np.random.default_rng(0).integers(0, 256, (84, 84, 3)).astype(np.uint8)
    encoded = png_bytes(image)  # a 1-D uint8 array, as tieredImageNet stores them
    np.testing.assert_array_equal(decode_image(encoded), image)
    np.testing.assert_array_equal(decode_image(encoded.tobytes()), image)


def test_jpeg_path_keeps_rgb_order_and_resizes_to_84(tmp_path):
    path = tmp_path / "a.jpg"
    write_jpeg(path, solid((200, 40, 90), (100, 90)))
    out = decode_image(path)
    assert out.shape == (84, 84, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - [200, 40, 90]).max() <= JPEG_TOLERANCE


def test_grey_palette_and_alpha_images_become_rgb():
    grey = Image.fromarray(np.full((84, 84), 77, np.uint8))
    np.testing.assert_array_equal(decode_image(_encoded(grey))[0, 0], [77, 77, 77])
    rgba = Image.fromarray(np.dstack([solid((10, 20, 30)), np.full((84, 84), 255, np.uint8)]))
    np.testing.assert_array_equal(decode_image(_encoded(rgba))[5, 5], [10, 20, 30])
    palette = Image.fromarray(solid((250, 0, 5))).convert("P", palette=Image.Palette.ADAPTIVE)
    np.testing.assert_array_equal(decode_image(_encoded(palette))[0, 0], [250, 0, 5])
    assert decode_image(_encoded(grey), channels=1).shape == (84, 84, 1)


@pytest.mark.parametrize("name, expected", [
    ("nearest", [0, 0, 255, 255]),
    ("bilinear", [0, 64, 191, 255]),  # triangle filter: 1/4 and 3/4 of the way
    ("bicubic", [0, 53, 202, 255]),
    ("lanczos", [0, 59, 196, 255]),
])
def test_each_named_filter_is_the_pil_filter(name, expected):
    edge = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("RGB")
    out = decode_image(_encoded(edge), size=(1, 4), resize=name)
    np.testing.assert_array_equal(out[0, :, 0], expected)


def test_area_filter_averages_the_covered_pixels():
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    out = decode_image(_encoded(Image.fromarray(image)), size=(4, 4), resize="area")
    block_means = image.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    assert np.abs(out - block_means).max() <= 1.0
    assert set(FILTERS) == {"bilinear", "bicubic", "lanczos", "nearest", "area"}


def test_resize_array_is_a_no_op_at_size_and_resizes_otherwise():
    batch = np.stack([solid((1, 2, 3), (84, 84)), solid((9, 8, 7), (84, 84))])
    assert resize_array(batch, (84, 84)) is batch
    small = resize_array(np.stack([solid((1, 2, 3), (50, 60))]), (84, 84), "bicubic")
    assert small.shape == (1, 84, 84, 3)
    np.testing.assert_array_equal(small[0, 40, 40], [1, 2, 3])


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_stream_yields_chunks_in_source_order(workers):
    colours = [(i * 20, 255 - i * 20, i) for i in range(10)]
    sources = [png_bytes(solid(c, (10, 12))) for c in colours]
    chunks = list(decode_stream(iter(sources), (84, 84), workers=workers, chunk=3))
    assert [start for start, _ in chunks] == [0, 3, 6, 9]
    images = np.concatenate([c for _, c in chunks])
    np.testing.assert_array_equal(images[:, 0, 0], colours)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_names_its_container_and_index(workers):
    sources = [png_bytes(solid((1, 1, 1)))] * 4 + [np.frombuffer(b"\x89PNG\r\n\x1a\nbroken", np.uint8)]
    with pytest.raises(FewshotError, match=r"^train_images_png\.pkl image 4: not a readable image .*truncated or corrupt"):
        list(decode_stream(sources, (84, 84), workers=workers, chunk=2, context="train_images_png.pkl"))


def test_missing_or_corrupt_file_and_bad_filter(tmp_path):
    with pytest.raises(FewshotError, match="absent.jpg: image file is not there"):
        decode_image(tmp_path / "absent.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(FewshotError, match="bad.jpg: not a readable image"):
        decode_image(bad)
    with pytest.raises(FewshotError, match="bad.jpg: not a readable image"):
        image_header(bad)
    with pytest.raises(FewshotError, match="unknown resize filter 'cubic'"):
        list(decode_stream([], (84, 84), resize="cubic"))
