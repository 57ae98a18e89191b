"""Process groups and collectives on torch.distributed: the ground floor every layer may use.

Who this process is (rank, world size, writer), sums, means and gathers over all ranks, and joining the
group torchrun or `fewshot train --nproc` described in the environment. Every function answers as a single
process would when no group is running, so single-process code needs no branch: losses (triplet mining over
all ranks, center-bank statistics), regularizers (CIR's global batch means), evaluation (sharded embedding and
scoring) and training all call these. nccl only moves GPU tensors and gloo only CPU ones: `_comm_device` moves
there and back, so callers pass tensors wherever they live.

Imports nothing of fewshot but its errors, so any module can use it without an import cycle. The DDP
training wrapper is in fewshot/train/ddp.py; the local multi-process launcher in fewshot/launch.py.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Callable, Iterator

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
# Collectives over all ranks.


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


def per_rank_share(total: int, what: str) -> int:
    """`total` split evenly over the ranks: an error naming `what` when it does not divide."""
    world = world_size()
    if total % world:
        raise FewshotError(f"{what}={total} does not split evenly over {world} processes; "
                           f"make it a multiple of {world} (the global batch must divide into equal shares)")
    return total // world
