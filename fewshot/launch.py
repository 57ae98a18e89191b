"""`fewshot train --nproc N`: N processes on this machine joined as one group on 127.0.0.1.

Under `torchrun` the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) is already set and
fewshot.distributed.process_group joins it; this module starts the processes itself (torch.multiprocessing,
spawn, a free port) for one-machine runs and tests.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable

import torch

from fewshot.errors import FewshotError

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_local_workers(fn: Callable, nproc: int, args: tuple = (), threads: int | None = None) -> list:
    """Run `fn(*args)` in `nproc` spawned processes joined as one group on 127.0.0.1; return what each returned.

    `fn` must be importable (a module-level function); what it returns must pickle. A FewshotError in any
    process is raised here with its message; other failures raise as torch.multiprocessing reports them.
    `threads` caps each process's intra-op threads (default: the cores shared out, at least 1).
    """
    import pickle
    import tempfile

    import torch.multiprocessing as mp

    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    # Results travel through files, not a pipe: a large result would block a child on a full pipe while
    # the parent waits for the children to end.
    with tempfile.TemporaryDirectory(prefix="fewshot-workers-") as folder:
        def outcomes() -> dict[int, tuple[str, Any]]:
            found = {}
            for path in Path(folder).glob("rank*.pkl"):
                with open(path, "rb") as handle:
                    found[int(path.stem[4:])] = pickle.load(handle)
            return found

        # When one process fails torch stops the others and logs a warning a process; the error says enough.
        spawn_log = logging.getLogger("torch.multiprocessing.spawn")
        level = spawn_log.level
        spawn_log.setLevel(logging.ERROR)
        try:
            mp.start_processes(_worker, args=(nproc, free_port(), threads, fn, args, folder), nprocs=nproc,
                               join=True, start_method="spawn")
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            errors = sorted((index, value) for index, (kind, value) in outcomes().items() if kind == "error")
            if errors:
                raise FewshotError(errors[0][1]) from None
            raise
        finally:
            spawn_log.setLevel(level)
        returned = outcomes()
    return [returned[i][1] if i in returned else None for i in range(nproc)]


def _worker(local_rank: int, nproc: int, port: int, threads: int, fn: Callable, args: tuple, folder: str) -> None:
    import pickle

    from fewshot.lifeline import die_with_parent

    die_with_parent()  # a killed `fewshot train --nproc N` takes its N processes with it

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(local_rank),
                       "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
                       "GROUP_RANK": "0"})
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes on C cores: each gets C/N threads, not C (oversubscription slows every one of them).
        torch.set_num_threads(threads)

    def report(outcome: tuple[str, Any]) -> None:
        with open(Path(folder) / f"rank{local_rank}.pkl", "wb") as handle:
            pickle.dump(outcome, handle)

    try:
        value = fn(*args)
    except FewshotError as exc:
        report(("error", str(exc)))
        raise SystemExit(FewshotError.exit_code) from None
    report(("ok", value))


def _train_worker(config: dict, data: str, out: str, resume: bool, progress: bool | str, device_name: str) -> dict:
    from fewshot.train.loop import train

    return train(config, data, out, resume=resume, progress=progress, device_name=device_name)


def launch(args: argparse.Namespace) -> int:
    """`fewshot train --nproc N`: the same run as one process, its global batch shared out over N processes."""
    from fewshot.config import load_config
    from fewshot.device import resolve_device

    config = load_config(args.config, args.overrides)
    if args.precision:
        config["train"]["precision"] = args.precision
    device = resolve_device(args.device or config["train"]["device"])
    if device.type == "cuda":
        if device.index is not None:
            raise FewshotError(f"--device {args.device} names one GPU but --nproc {args.nproc} needs one a "
                               "process; pass --device cuda")
        if args.nproc > torch.cuda.device_count():
            raise FewshotError(f"--nproc {args.nproc} but {torch.cuda.device_count()} GPUs are visible; use "
                               "--nproc at most that, or --device cpu")
    progress = False if getattr(args, "quiet", False) else "lines" if args.no_progress else True
    summaries = run_local_workers(_train_worker, args.nproc, (config, args.data, args.out, args.resume,
                                                              progress, str(device)))
    summary = summaries[0]
    best = summary["best"]
    val = f", best val {best['val_acc']:.2f}% at step {best['step']}" if best.get("val_acc") is not None else ""
    print(f"trained {config['name']} for {summary['steps']} steps into {args.out} on {args.nproc} processes{val}")
    return 0
