"""A restricted unpickler for third-party dataset pickles.

Every pickled dataset format we read (miniImageNet caches, Gidaris pickles, tieredImageNet) comes from a
file host, and a pickle can run any function it names while it loads. `load_pickle` resolves only the
globals that numpy arrays, dtypes and scalars and plain containers need; any other global (`os.system`,
`builtins.eval`, a class of some package) stops the load with a one-line FewshotError before it is
imported, so nothing it names is ever called.

Python-2 pickles (most of these files) hold byte strings: the plain load is tried first and, when it
fails decoding them, the load is retried with encoding='latin1' (what numpy documents for old array
pickles). Byte-string dict keys (b'image_data') are turned into str keys so readers see one spelling.
"""
from __future__ import annotations

import builtins
import codecs
import collections
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fewshot.errors import FewshotError

try:  # numpy >= 2 moved the pickle helpers to numpy._core; 1.x pickles still name numpy.core.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 writes for `bytes` at protocol <= 2 is `_codecs.encode(text, 'latin1')`.

    `codecs.encode` can run any registered codec, so only the latin-1 spelling is admitted.
    """
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise _Forbidden(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_NUMPY = {
    "_reconstruct": _multiarray._reconstruct,  # ndarray.__reduce__ at protocol <= 4
    "scalar": _multiarray.scalar,  # numpy scalars (np.int64(3))
    "_frombuffer": getattr(_numeric, "_frombuffer", None),  # ndarray at protocol 5
}

# (module, name) -> object. Names differ across numpy versions and Python 2 (`__builtin__`, `copy_reg`).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, name): obj for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, obj in _NUMPY.items() if name != "_frombuffer"},
    **{(module, "_frombuffer"): _NUMPY["_frombuffer"] for module in ("numpy.core.numeric", "numpy._core.numeric")
       if _NUMPY["_frombuffer"] is not None},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    # Plain containers and scalars. `collections` dicts are admitted because caches were written with them;
    # a defaultdict's factory is itself a global and passes through this same check.
    **{(module, name): getattr(builtins, name)
       for module in ("builtins", "__builtin__")
       for name in ("list", "tuple", "dict", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                    "bool", "complex")},
    ("__builtin__", "unicode"): str,
    ("__builtin__", "long"): int,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
}


class _Forbidden(Exception):
    """Raised inside the unpickler; turned into a FewshotError naming the file."""


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED_GLOBALS and refuses everything else before importing it."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Forbidden(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Forbidden(f"persistent id {pid!r}")


MAX_DEPTH = 64  # dataset pickles nest a few levels (dict -> list -> array); a deeper one is not a dataset


class _TooDeep(Exception):
    pass


def _str_keys(obj: Any, depth: int = 0) -> Any:
    """Turn byte-string dict keys into str, through nested dicts, lists and tuples (not into arrays).

    Containers nested deeper than MAX_DEPTH are refused (a crafted pickle nests thousands deep, which would
    end this walk, or any reader's, in a RecursionError)."""
    if depth > MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        raise _TooDeep
    if isinstance(obj, dict):
        items = [(k.decode("latin1") if isinstance(k, bytes) else k, _str_keys(v, depth + 1)) for k, v in obj.items()]
        if isinstance(obj, collections.defaultdict):
            return collections.defaultdict(obj.default_factory, items)
        return type(obj)(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, list):
        return [_str_keys(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_str_keys(v, depth + 1) for v in obj)
    return obj


def loads_restricted(handle: BinaryIO, name: str, encoding: str = "ASCII") -> Any:
    """Unpickle one object from an open binary file with the restricted unpickler; `name` names it in errors."""
    try:
        return RestrictedUnpickler(handle, encoding=encoding).load()
    except _Forbidden as exc:
        raise FewshotError(
            f"{name}: pickle asks for {exc}, which is not allowed in a dataset file; refusing to load it"
        ) from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Load a dataset pickle safely; Python-2 pickles are read with latin1 and byte keys become str keys.

    Raises a one-line FewshotError for a missing, truncated or corrupt file and for any forbidden global.
    """
    path = Path(path)
    if not path.is_file():
        raise FewshotError(f"{path} does not exist; expected a pickle file there")
    last_error: Exception | None = None
    for encoding in ("ASCII", "latin1"):
        try:
            with open(path, "rb") as handle:
                return _str_keys(loads_restricted(handle, str(path), encoding=encoding))
        except UnicodeDecodeError as exc:  # a Python-2 byte string: retry as latin1
            last_error = exc
            continue
        except FewshotError:
            raise
        except (_TooDeep, RecursionError):
            raise FewshotError(f"{path}: its objects nest more than {MAX_DEPTH} levels deep, which no dataset "
                               "file does; refusing it") from None
        except MemoryError:
            raise FewshotError(f"{path}: not enough memory to load this pickle") from None
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                OverflowError, ImportError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, EOFError):
                reason = "it ends early"
            raise FewshotError(
                f"{path}: not a readable pickle ({reason}); the file is truncated or corrupt: download it again"
            ) from None
    raise FewshotError(f"{path}: cannot decode its strings even as latin1 ({last_error}); the file is corrupt")
