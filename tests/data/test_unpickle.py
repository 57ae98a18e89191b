"""The restricted unpickler: numpy arrays and containers load, Python-2 pickles load, anything else is refused."""
from __future__ import annotations

import collections
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from fewshot.data.unpickle import load_pickle
from fewshot.errors import FewshotError

sys.path.insert(0, str(Path(__file__).parent / "formats"))
from fixtures import Evil, py2_pickle_dumps  # noqa: E402


def _write(tmp_path: Path, data: bytes, name: str = "data.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_arrays_scalars_dtypes_and_containers_load(tmp_path, protocol):
    obj = {
        "images": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3),
        "labels": np.array([3, -1], dtype=np.int64),
        "scalar": np.int64(7),
        "dtype": np.dtype("<f4"),
        "plain": [1, 2.5, None, True, "s", b"b", (1, 2), {3}, frozenset({4}), complex(1, 2)],
        "ordered": collections.OrderedDict([("a", 1)]),
    }
    loaded = load_pickle(_write(tmp_path, pickle.dumps(obj, protocol=protocol)))
    np.testing.assert_array_equal(loaded["images"], obj["images"])
    assert loaded["images"].dtype == np.uint8
    np.testing.assert_array_equal(loaded["labels"], [3, -1])
    assert loaded["scalar"] == 7 and loaded["dtype"] == np.dtype("<f4")
    assert loaded["plain"] == obj["plain"]
    assert loaded["ordered"] == {"a": 1}


def test_bytes_keys_become_str_keys_at_every_depth(tmp_path):
    obj = {b"image_data": np.zeros((1, 2), np.uint8), b"class_dict": {b"n01": [0], "n02": [1]}, b"list": [{b"k": 1}]}
    loaded = load_pickle(_write(tmp_path, pickle.dumps(obj, protocol=2)))
    assert set(loaded) == {"image_data", "class_dict", "list"}
    assert loaded["class_dict"] == {"n01": [0], "n02": [1]}
    assert loaded["list"] == [{"k": 1}]


def test_genuine_python2_pickle_falls_back_to_latin1(tmp_path):
    images = np.array([[[200, 0, 255]]], dtype=np.uint8)  # bytes >= 128: not ASCII, so the plain load fails
    path = _write(tmp_path, py2_pickle_dumps({b"data": images, b"labels": [5, 6], b"name": b"n0153282900000005"}))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # what the first, plain attempt meets
    loaded = load_pickle(path)
    np.testing.assert_array_equal(loaded["data"], images)
    assert loaded["labels"] == [5, 6]
    assert loaded["name"] == "n0153282900000005"


def test_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, pickle.dumps({"image_data": Evil(f"touch {marker}")}, protocol=2), "evil.pkl")
    with pytest.raises(FewshotError) as info:
        load_pickle(path)
    message = str(info.value)
    assert message == (f"{path}: pickle asks for posix.system, which is not allowed in a dataset file; "
                       "refusing to load it")
    assert not marker.exists()


@pytest.mark.parametrize("payload, forbidden", [
    (b"cbuiltins\neval\n(X\x06\x00\x00\x001 + 1tR.", "builtins.eval"),
    (b"c__builtin__\ngetattr\n(]X\x06\x00\x00\x00appendtR.", "__builtin__.getattr"),
    (b"\x80\x02ccopy_reg\n_reconstructor\n.", "copy_reg._reconstructor"),
    (b"\x80\x02cnumpy\nload\n.", "numpy.load"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64\x86R.", "_codecs.encode with encoding 'base64'"),
])
def test_every_other_global_is_refused(tmp_path, payload, forbidden):
    path = _write(tmp_path, payload)
    with pytest.raises(FewshotError, match=f"pickle asks for {forbidden}, which is not allowed"):
        load_pickle(path)


def test_persistent_ids_are_refused(tmp_path):
    path = _write(tmp_path, b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID
    with pytest.raises(FewshotError, match="persistent id"):
        load_pickle(path)


@pytest.mark.parametrize("cut", [0, 1, 30, -1])
def test_truncated_pickle_is_one_line_error_naming_the_file(tmp_path, cut):
    whole = pickle.dumps({"image_data": np.zeros((4, 4, 3), np.uint8)}, protocol=2)
    path = _write(tmp_path, whole[: cut if cut >= 0 else len(whole) + cut])
    with pytest.raises(FewshotError) as info:
        load_pickle(path)
    assert str(info.value).startswith(f"{path}: not a readable pickle")
    assert "truncated or corrupt" in str(info.value) and "\n" not in str(info.value)


def test_garbage_and_missing_files(tmp_path):
    with pytest.raises(FewshotError, match="truncated or corrupt"):
        load_pickle(_write(tmp_path, b"PK\x03\x04 this is a zip, not a pickle"))
    with pytest.raises(FewshotError, match="does not exist"):
        load_pickle(tmp_path / "absent.pkl")
