"""Multi-process training on torch.distributed: gloo on CPU, nccl on GPU, one process a device.

Design (docs/distributed.md has the user's side):

- Every rank builds the same sampler from the same seed and draws the whole *global* batch, then keeps its
  share: episodes `rank::world` of `train.episodes_per_step`, or one block of `batch.classes / world` classes of
  a PK batch. The global batch is therefore the same whatever the number of processes, and the sampler state
  in a checkpoint is global, so a run resumes with any number of processes.
- Gradients average through DistributedDataParallel. A rank holding several episodes runs one forward and
  backward per episode (the others under `no_sync`), scaled by 1/episodes, so N ranks x B episodes computes
  the same gradient as 1 rank x N*B episodes: each episode meets BatchNorm alone either way.
- Statistics over samples (center-bank moving averages, CIR class means, triplet mining) call the helpers
  below; they are no-ops in a single process, so single-process code needs no branch.
- Rank 0 alone touches the run folder (config, log, checkpoints, run.json); what it reads (a checkpoint to
  resume) is broadcast, so other nodes need no shared file system.

`launch` starts N local processes (torch.multiprocessing, a free port on 127.0.0.1); under `torchrun` the
environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) is already set and `process_group` joins it.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fewshot.errors import FewshotError

# ---------------------------------------------------------------------------------------------------------
# Who am I: all answer as a single process would when no process group is running.


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_writer() -> bool:
    """Rank 0 alone writes checkpoints, logs and results."""
    return rank() == 0


# ---------------------------------------------------------------------------------------------------------
# Collectives over all ranks. nccl only moves GPU tensors; gloo only CPU ones: `_on_comm_device` moves there
# and back, so callers pass tensors wherever they live.


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks (a new tensor; the input itself when not distributed)."""
    if not is_distributed():
        return tensor
    work = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


@torch.no_grad()
def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean over ranks (the input itself when not distributed)."""
    if not is_distributed():
        return tensor
    return all_reduce_sum(tensor) / world_size()


class _GatherCat(torch.autograd.Function):
    """all_gather along dim 0 whose backward hands each rank the all-rank sum of the gradient of its rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rows = tensor.shape[0]
        return _gather(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        work = grad.to(_comm_device(), copy=True).contiguous()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        start = rank() * ctx.rows
        return work[start:start + ctx.rows].to(grad.device)


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `tensor` along dim 0, in rank order (same shape on every rank).

    Differentiable: the backward pass sums every rank's gradient for a rank's rows and hands it to that rank,
    so with DDP's averaging the parameters get the gradient of the mean of the per-rank losses, as if one
    process held the global batch. Every rank must then run backward (they do, in a training step).
    """
    if not is_distributed():
        return tensor
    if tensor.requires_grad and torch.is_grad_enabled():
        return _GatherCat.apply(tensor)
    return _gather(tensor)


@torch.no_grad()
def _gather(tensor: torch.Tensor) -> torch.Tensor:
    work = tensor.detach().to(_comm_device()).contiguous()
    parts = [torch.empty_like(work) for _ in range(world_size())]
    dist.all_gather(parts, work)
    return torch.cat(parts, dim=0).to(tensor.device)


@torch.no_grad()
def all_gather_rows(rows: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's 2-D `rows` (n_rank, width), n_rank may differ and be 0, as a list in rank order.

    A rank with no rows may pass any (0, w) tensor: the width is taken from the ranks that have rows.
    """
    if rows.dim() != 2:
        raise ValueError(f"all_gather_rows takes a 2-D tensor, got shape {tuple(rows.shape)}")
    if not is_distributed():
        return [rows]
    device = _comm_device()
    shape = torch.tensor([rows.shape[0], rows.shape[1] if rows.shape[0] else 0], device=device)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    lengths = [int(s[0]) for s in shapes]
    width = max(int(s[1]) for s in shapes)
    work = torch.zeros((max(lengths), width), dtype=rows.dtype, device=device)
    if rows.shape[0]:
        work[: rows.shape[0]] = rows.to(device)
    parts = [torch.empty_like(work) for _ in range(world_size())]
    dist.all_gather(parts, work)
    return [part[:n].to(rows.device) for part, n in zip(parts, lengths)]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics, banks), so all ranks hold one model."""
    if not is_distributed():
        return
    device = _comm_device()
    for buffer in module.buffers():
        work = buffer.to(device)
        dist.broadcast(work, src=0)
        if work is not buffer:
            buffer.copy_(work)


def on_rank0(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` on rank 0 only and return its result on every rank; its FewshotError is raised on every rank.

    For work that touches the run folder (checks, reading a checkpoint) so other nodes need not see it.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    payload: list[Any] = [None]
    if rank() == 0:
        try:
            payload[0] = ("ok", fn(*args, **kwargs))
        except FewshotError as exc:
            payload[0] = ("error", str(exc))
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise FewshotError(value)
    return value


# ---------------------------------------------------------------------------------------------------------
# Joining a process group.


def local_device(device: torch.device) -> torch.device:
    """A bare `cuda` means this process's own GPU (LOCAL_RANK) when several processes share a machine."""
    if device.type != "cuda":
        return device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device.index is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise FewshotError(f"process {local} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                               "visible); start at most one process a GPU, or use --device cpu")
        device = torch.device("cuda", local)
    if world > 1:
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(device: torch.device, timeout_minutes: float = 30.0) -> Iterator[None]:
    """Join the group torchrun or `launch` described in the environment (gloo on CPU, nccl on GPU).

    A no-op when WORLD_SIZE is absent or 1, or a group is already running (then the caller owns it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes),
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FewshotError(f"could not join the process group at {os.environ.get('MASTER_ADDR')}:"
                           f"{os.environ.get('MASTER_PORT')} ({first}); check the rendezvous endpoint") from None
    try:
        yield
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# The training step.


def per_rank_share(total: int, what: str) -> int:
    """`total` split evenly over the ranks: an error naming `what` when it does not divide."""
    world = world_size()
    if total % world:
        raise FewshotError(f"{what}={total} does not split evenly over {world} processes; "
                           f"make it a multiple of {world} (the global batch must divide into equal shares)")
    return total // world


class _LossModule(nn.Module):
    """DDP wraps a module's forward; a learner's entry point is `loss(batch)`."""

    def __init__(self, learner: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.learner = learner
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(batch)


def separate_rank_rng(seed: int, step: int) -> None:
    """Give ranks > 0 their own torch stream (dropout, DropBlock, CIR draws), derived from (seed, step, rank).

    Every rank starts from the same torch seed (so models start identical); without this, stochastic layers
    would draw the same masks on every rank. Rank 0 keeps the stream checkpoints save and restore.
    """
    if rank() > 0:
        torch.manual_seed(int(np.random.SeedSequence([int(seed), int(step), rank()]).generate_state(1)[0]))


def wrap_for_training(learner: nn.Module, loss_fn: Callable, device: torch.device,
                      sync_batchnorm: bool = False) -> Callable:
    """`loss_fn` itself in one process; a DistributedDataParallel around it in several.

    `sync_batchnorm` turns BatchNorm into SyncBatchNorm (torch supports it on GPUs only), so a PK batch split
    over ranks normalises like the whole batch in one process. The layers keep their parameters, so the
    optimizer and checkpoints are unaffected.
    """
    if not is_distributed():
        return loss_fn
    if sync_batchnorm:
        if device.type != "cuda":
            raise FewshotError("train.sync_batchnorm=true needs GPUs (torch has no SyncBatchNorm on CPU); "
                               "set it false or train on GPUs")
        nn.SyncBatchNorm.convert_sync_batchnorm(learner)
    ids = [device.index] if device.type == "cuda" else None
    # Gradients as views of DDP's buckets: no second copy of them, and no layout mismatch to warn about.
    return nn.parallel.DistributedDataParallel(_LossModule(learner, loss_fn), device_ids=ids,
                                               gradient_as_bucket_view=True)


def backward_step(forward: Callable, batches: list, autocast_context: Callable[[], Any]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward every local batch, accumulating mean gradients; return the global mean loss/metrics.

    Gradients are all-reduced once (on the last batch); the returned loss and metrics are means over all
    ranks' batches, the same numbers one process holding the global batch would log. They are float64 0-d
    tensors on the batches' device, never read here: on a GPU the step runs without a host sync.
    """
    count = len(batches)
    ddp = isinstance(forward, nn.parallel.DistributedDataParallel)
    loss_sum: torch.Tensor | None = None
    metric_sums: dict[str, torch.Tensor] = {}
    for index, batch in enumerate(batches):
        last = index == count - 1
        with (contextlib.nullcontext() if last or not ddp else forward.no_sync()):
            with autocast_context():
                loss, metrics = forward(batch)
            # One batch: the loss as is, so the single-process path is exactly the plain one.
            (loss if count == 1 else loss / count).backward()
        value = loss.detach().double()
        loss_sum = value if loss_sum is None else loss_sum + value
        for key, metric in metrics.items():
            metric = torch.as_tensor(metric, dtype=torch.float64, device=value.device)
            metric_sums[key] = metric_sums[key] + metric if key in metric_sums else metric
    if count == 1 and not is_distributed():
        return loss_sum, metric_sums
    keys = sorted(metric_sums)
    totals = torch.stack([loss_sum] + [metric_sums[k] for k in keys])
    means = all_reduce_mean(totals) / count
    return means[0], {key: means[i + 1] for i, key in enumerate(keys)}


# ---------------------------------------------------------------------------------------------------------
# `fewshot train --nproc N`: N processes on this machine.


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


def _train_worker(config: dict, data: str, out: str, resume: bool, progress: bool, device_name: str) -> dict:
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
    summaries = run_local_workers(_train_worker, args.nproc, (config, args.data, args.out, args.resume,
                                                              not args.no_progress, str(device)))
    summary = summaries[0]
    best = summary["best"]
    val = f", best val {best['val_acc']:.2f}% at step {best['step']}" if best.get("val_acc") is not None else ""
    print(f"trained {config['name']} for {summary['steps']} steps into {args.out} on {args.nproc} processes{val}")
    return 0
