"""Episode sampling into a training batch: fewshot against learn2learn 0.2.0 and against a bare gather.

    .venv/bin/python benchmarks/bench_sampling.py [--install-l2l] [--reimplemented] [--quick] [--json FILE]

Data: a generated miniImageNet-shaped store (uint8 84x84x3; train 64 classes x 600, test 20 x 600), cached
under $TMPDIR/fewshot-bench. Episodes: 5-way, 1 and 5 shots, 15 queries a class. One "task" is one episode
turned into a batch of images (uint8, (N*(K+Q), 84, 84, 3)) and its labels 0..N-1:

- learn2learn Taskset with NWays + KShots(K+Q) + LoadData + RemapLabels, and with FusedNWaysKShots + LoadData +
  RemapLabels, over the same store (fewshot.data.torch_dataset.SplitDataset, which hands learn2learn the class
  index so that it reads no image to build it; images come out as uint8 tensors);
- fewshot: BatchSource.rows_and_labels + BatchSource.gather, the code the training loop runs (and, apart,
  BatchSource.next, which also converts to float (B, C, H, W) for the model; learn2learn stops at uint8);
- the limit: a bare np.take of the same episodes' rows (drawn beforehand) into a reused buffer, and the
  plain `images[rows]` (a fresh array each time).

learn2learn: with --install-l2l, its last release is built into benchmarks/.l2l-venv (see install_l2l), and
this script re-runs itself there whenever that folder exists, so every method is timed in one process.
Without it (or with --reimplemented) a faithful pure-Python re-implementation of learn2learn 0.2.0's
per-task algorithm is timed instead (below: the same classes and calls as its Cython sources, which
compile the same Python-object operations; the real one may be somewhat faster). The output says which.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, add_common_args, header, interleaved, mini_store, print_table, warm_pages  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from torch.utils.data._utils.collate import default_collate  # noqa: E402

L2L_VENV = Path(__file__).resolve().parent / ".l2l-venv"
L2L_VERSION = "0.2.0"
L2L_PYX = ("learn2learn/data/meta_dataset.pyx", "learn2learn/data/task_dataset.pyx", "learn2learn/data/transforms.pyx")

# ---------------------------------------------------------------------------------------------------------
# Installing the real learn2learn 0.2.0 on Python 3.11 (docs: shared/docs/performance.md).


def _run(command: list[str], timeout: float = 600) -> None:
    print("   $ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run(command, check=True, timeout=timeout)


def install_l2l(venv: Path = L2L_VENV) -> None:
    """Build learn2learn 0.2.0 into `venv`, which sees this environment's packages (torch, numpy) too.

    Its sdist ships C files from an old Cython that include longintrepr.h, gone in Python 3.11: the C files
    are regenerated from its .pyx sources, then it is installed without its dependency list (gsutil, qpth,
    cvxpy pin numpy<2 and are unused here); gym and requests, which it imports at start, are installed.
    """
    started = time.perf_counter()
    base = getattr(sys, "_base_executable", sys.executable)
    if not (venv / "bin" / "python").exists():
        _run([base, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    import sysconfig

    # This environment's packages, after the venv's own: torch and numpy are not installed twice.
    Path(site, "fewshot-main-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "cython<3.1", "wheel", "setuptools", "gym", "requests"])
    with tempfile.TemporaryDirectory() as scratch:
        _run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "learn2learn",
              f"learn2learn=={L2L_VERSION}", "-d", scratch])
        with tarfile.open(Path(scratch) / f"learn2learn-{L2L_VERSION}.tar.gz") as archive:
            archive.extractall(scratch, filter="data")
        source = Path(scratch) / f"learn2learn-{L2L_VERSION}"
        _run([python, "-m", "cython", "-3", *[str(source / p) for p in L2L_PYX]])
        _run([python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", str(source)])
    _run([python, "-c", "import learn2learn; print('learn2learn', learn2learn.__version__, 'installed')"])
    print(f"   learn2learn {L2L_VERSION} built into {venv} in {time.perf_counter() - started:.0f} s")


def import_l2l():
    """The real learn2learn, or None. (Importing it imports gym, which prints a notice: silenced.)"""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            import learn2learn
        except ImportError:
            return None
    return learn2learn


# ---------------------------------------------------------------------------------------------------------
# learn2learn 0.2.0's task pipeline re-implemented in Python, call for call (learn2learn/data/meta_dataset.pyx,
# task_dataset.pyx, transforms.pyx): descriptions are lists of per-sample objects, each task copies the class
# index, filters and groups descriptions in Python loops, loads every sample with dataset[i] and collates.


class _DataDescription:
    def __init__(self, index: int) -> None:
        self.index = index
        self.transforms: list = []


class _MetaDataset(Dataset):
    def __init__(self, dataset, labels_to_indices: dict) -> None:
        self.dataset = dataset
        self.labels_to_indices = labels_to_indices
        self.indices_to_labels = {idx: label for label, indices in labels_to_indices.items() for idx in indices}
        self.labels = list(self.labels_to_indices.keys())

    def __getitem__(self, item):
        return self.dataset[item]

    def __len__(self) -> int:
        return len(self.dataset)


class _NWays:
    def __init__(self, dataset, n: int) -> None:
        self.dataset, self.n = dataset, n
        self.indices_to_labels = dict(dataset.indices_to_labels)

    def new_task(self) -> list:
        labels = self.dataset.labels
        task_description = []
        labels_to_indices = dict(self.dataset.labels_to_indices)
        classes = random.sample(labels, k=self.n)
        for cl in classes:
            for idx in labels_to_indices[cl]:
                task_description.append(_DataDescription(idx))
        return task_description

    def __call__(self, task_description):
        if task_description is None:
            return self.new_task()
        classes = random.sample(list({self.indices_to_labels[dd.index] for dd in task_description}), k=self.n)
        return [dd for dd in task_description if self.indices_to_labels[dd.index] in classes]


class _KShots:
    def __init__(self, dataset, k: int) -> None:
        self.dataset, self.k = dataset, k

    def __call__(self, task_description):
        class_to_data = collections.defaultdict(list)
        for dd in task_description:
            class_to_data[self.dataset.indices_to_labels[dd.index]].append(dd)
        return sum([random.sample(dds, k=self.k) for dds in class_to_data.values()], [])


class _FusedNWaysKShots:
    def __init__(self, dataset, n: int, k: int) -> None:
        self.dataset, self.n, self.k = dataset, n, k
        self.filter_labels = dataset.labels

    def __call__(self, task_description):
        assert task_description is None  # first transform, as in the benchmark
        task_description = []
        for sl in random.sample(self.filter_labels, k=self.n):
            for idx in random.sample(self.dataset.labels_to_indices[sl], k=self.k):
                task_description.append(_DataDescription(idx))
        return task_description


class _LoadData:
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, task_description):
        for data_description in task_description:
            data_description.transforms.append(lambda x: self.dataset[x])
        return task_description


class _RemapLabels:
    def __init__(self, dataset, shuffle: bool = True) -> None:
        self.dataset, self.shuffle = dataset, shuffle

    def remap(self, data, mapping):
        data = [d for d in data]
        data[1] = mapping(data[1])
        return data

    def __call__(self, task_description):
        labels = list(set(self.dataset.indices_to_labels[dd.index] for dd in task_description))
        if self.shuffle:
            random.shuffle(labels)

        def mapping(x):
            return labels.index(x)

        for dd in task_description:
            dd.transforms.append(functools.partial(self.remap, mapping=mapping))
        return task_description


class _Taskset:
    """Taskset(num_tasks=-1): every sample() draws a new description and builds its task."""

    def __init__(self, dataset, task_transforms) -> None:
        self.dataset, self.task_transforms = dataset, task_transforms

    def sample_task_description(self):
        description = None
        for transform in self.task_transforms:
            description = transform(description)
        return description

    def get_task(self, task_description):
        all_data = []
        for data_description in task_description:
            data = data_description.index
            for transform in data_description.transforms:
                data = transform(data)
            all_data.append(data)
        return default_collate(all_data)

    def sample(self):
        random.randint(0, 0)  # len(taskset) is 1 when num_tasks == -1
        return self.get_task(self.sample_task_description())


def l2l_tasksets(l2l, split, ways: int, shots: int, queries: int) -> dict:
    """{"NWays+KShots": taskset, "FusedNWaysKShots": taskset} with learn2learn or its re-implementation."""
    from fewshot.data.torch_dataset import SplitDataset

    dataset = SplitDataset(split, transform=torch.from_numpy)  # uint8 (H, W, C) tensors, as the store holds
    per_class = shots + queries
    if l2l is not None:
        meta = l2l.data.MetaDataset(dataset, labels_to_indices=dataset.labels_to_indices())
        t = l2l.data.transforms
        return {
            "NWays+KShots": l2l.data.Taskset(meta, [t.NWays(meta, ways), t.KShots(meta, per_class), t.LoadData(meta),
                                                    t.RemapLabels(meta)], num_tasks=-1),
            "FusedNWaysKShots": l2l.data.Taskset(meta, [t.FusedNWaysKShots(meta, ways, per_class), t.LoadData(meta),
                                                        t.RemapLabels(meta)], num_tasks=-1),
        }
    meta = _MetaDataset(dataset, dataset.labels_to_indices())
    return {
        "NWays+KShots": _Taskset(meta, [_NWays(meta, ways), _KShots(meta, per_class), _LoadData(meta),
                                        _RemapLabels(meta)]),
        "FusedNWaysKShots": _Taskset(meta, [_FusedNWaysKShots(meta, ways, per_class), _LoadData(meta),
                                            _RemapLabels(meta)]),
    }


# ---------------------------------------------------------------------------------------------------------
# fewshot's side.


def batch_source(split, ways: int, shots: int, queries: int, seed: int = 0):
    from fewshot.config import load_config
    from fewshot.episodes.source import BatchSource

    config = load_config("protonet", [f"episodes.ways={ways}", f"episodes.shots={shots}",
                                      f"episodes.queries={queries}"])
    return BatchSource("episode", split, config, seed)


def measure_setting(l2l, split, ways: int, shots: int, queries: int, rounds: int, min_seconds: float) -> dict:
    source = batch_source(split, ways, shots, queries)
    # The same episodes' rows, drawn beforehand, for the bare gathers.
    planned = batch_source(split, ways, shots, queries)
    plan = [planned.rows_and_labels() for _ in range(256)]
    buffer = np.empty((len(plan[0][0]), *split.image_shape), dtype=np.uint8)
    cursor = [0]

    def next_planned():
        cursor[0] = (cursor[0] + 1) % len(plan)
        return plan[cursor[0]]

    def bare_take():
        rows, labels, _ = next_planned()
        np.take(split.images, rows, axis=0, out=buffer, mode="wrap")
        return torch.from_numpy(buffer), torch.from_numpy(labels)

    def plain_index():
        rows, labels, _ = next_planned()
        return torch.from_numpy(split.images[rows]), torch.from_numpy(labels)

    def sorted_scatter():  # what BatchSource.gather did before: read in row order, permute back
        rows, labels, _ = next_planned()
        order = np.argsort(rows, kind="stable")
        gathered = np.empty((len(rows), *split.image_shape), dtype=np.uint8)
        gathered[order] = split.images[rows[order]]
        return torch.from_numpy(gathered), torch.from_numpy(labels)

    def fewshot_uint8():
        rows, labels, _ = source.rows_and_labels()
        return source.gather(rows), torch.from_numpy(labels)

    cpu = torch.device("cpu")
    tasksets = l2l_tasksets(l2l, split, ways, shots, queries)
    methods = {
        "learn2learn NWays+KShots": tasksets["NWays+KShots"].sample,
        "learn2learn FusedNWaysKShots": tasksets["FusedNWaysKShots"].sample,
    }
    if l2l is not None:  # the re-implementation beside the real one: how faithful its timing is
        copies = l2l_tasksets(None, split, ways, shots, queries)
        methods["re-implemented l2l NWays+KShots"] = copies["NWays+KShots"].sample
        methods["re-implemented l2l FusedNWaysKShots"] = copies["FusedNWaysKShots"].sample
    methods |= {
        "fewshot BatchSource (uint8 batch)": fewshot_uint8,
        "fewshot BatchSource.next (float, channels_last)": lambda: source.next(cpu, True),
        "fewshot BatchSource.next (float, NCHW)": lambda: source.next(cpu, False),
        "bare np.take into a reused buffer (limit)": bare_take,
        "plain images[rows] (fresh array)": plain_index,
        "sorted read + scatter (previous gather)": sorted_scatter,
    }
    # Same product: check once that every method makes a batch of the episode's shape.
    for name, fn in methods.items():
        out = fn()
        images = out.images if hasattr(out, "images") else out[0]
        assert images.shape[0] == ways * (shots + queries), (name, images.shape)
    return interleaved(methods, rounds=rounds, min_seconds=min_seconds, clock="cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--install-l2l", action="store_true", help=f"build learn2learn {L2L_VERSION} into {L2L_VENV}")
    parser.add_argument("--reimplemented", action="store_true",
                        help="time the re-implementation of learn2learn even where the real one is installed")
    add_common_args(parser)
    args = parser.parse_args()
    if args.install_l2l:
        install_l2l()
    venv_python = L2L_VENV / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == L2L_VENV.resolve()
    if venv_python.exists() and not in_venv and not args.reimplemented:
        argv = [a for a in sys.argv[1:] if a != "--install-l2l"]
        os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *argv])

    from fewshot.data.store import Store
    from fewshot.device import tune_allocator

    tune_allocator()  # as the training loop does; every method below runs under it
    torch.set_num_threads(1)  # data preparation runs beside the model, which has the cores
    l2l = None if args.reimplemented else import_l2l()
    which = (f"the real learn2learn {l2l.__version__} (Cython, built into {L2L_VENV.name})" if l2l is not None else
             "a pure-Python re-implementation of learn2learn 0.2.0's per-task algorithm (not the real package: "
             "run with --install-l2l to build it)")
    header("Episode sampling into a training batch (5-way, 15 queries a class, miniImageNet-shaped uint8)")
    print(f"   learn2learn side: {which}")
    print("   times: CPU time of the one thread doing the work (the machine is shared), median of interleaved rounds")
    random.seed(0)
    store = Store(mini_store())
    report = Report("sampling")
    report.figure("learn2learn", "real " + l2l.__version__ if l2l is not None else "re-implementation")
    rounds, min_seconds = (2, 0.15) if args.quick else (5, 0.4)
    worst = {"vs_nk": float("inf"), "vs_fused": float("inf"), "vs_limit": 0.0}
    for split_name in ("train", "test"):
        split = store.split(split_name)
        warm_pages(split.images)
        for shots in (1, 5):
            seconds = measure_setting(l2l, split, 5, shots, 15, rounds, min_seconds)
            ours = seconds["fewshot BatchSource (uint8 batch)"]
            limit = seconds["bare np.take into a reused buffer (limit)"]
            print(f"\n   {split_name} split ({split.n_classes} classes), 5-way {shots}-shot 15-query, "
                  f"{5 * (shots + 15)} images a task:")
            rows = [[name, f"{1 / s:,.0f}", f"{s / ours:.2f}"] for name, s in seconds.items()]
            print_table(rows, ["method", "tasks/s", "time / fewshot uint8"])
            vs_nk = seconds["learn2learn NWays+KShots"] / ours
            vs_fused = seconds["learn2learn FusedNWaysKShots"] / ours
            vs_limit = ours / limit
            print(f"   fewshot is {vs_nk:.1f}x learn2learn NWays+KShots, {vs_fused:.1f}x FusedNWaysKShots; "
                  f"takes {vs_limit:.2f}x the bare gather")
            key = f"{split_name}_5w{shots}s"
            report.figure(key, {name: 1 / s for name, s in seconds.items()})
            worst = {"vs_nk": min(worst["vs_nk"], vs_nk), "vs_fused": min(worst["vs_fused"], vs_fused),
                     "vs_limit": max(worst["vs_limit"], vs_limit)}
    print()
    side = "learn2learn" if l2l is not None else "re-implemented learn2learn"
    report.target(f"speed-up over {side} NWays+KShots (worst setting)", worst["vs_nk"], 20, True, "x")
    report.target(f"speed-up over {side} FusedNWaysKShots (worst setting)", worst["vs_fused"], 2, True, "x")
    report.target("time over the bare gather of the same bytes (worst setting)", worst["vs_limit"], 1.15, False, "x")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
