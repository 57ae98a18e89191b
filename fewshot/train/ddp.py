"""The training step on several processes: DistributedDataParallel around a learner's loss.

Design (docs/distributed.md has the user's side):

- Every rank builds the same sampler from the same seed and draws the whole *global* batch, then keeps its
  share (fewshot/episodes/source.py): episodes `rank::world` of `train.episodes_per_step`, or one block of
  `batch.classes / world` classes of a PK batch. The global batch is therefore the same whatever the number of
  processes, and the sampler state in a checkpoint is global, so a run resumes with any number of processes.
- Gradients average through DistributedDataParallel. A rank holding several episodes runs one forward and
  backward per episode (the others under `no_sync`), scaled by 1/episodes, so N ranks x B episodes computes
  the same gradient as 1 rank x N*B episodes: each episode meets BatchNorm alone either way.
- Statistics over samples (center-bank moving averages, CIR class means, triplet mining) use the collectives
  of fewshot/distributed.py; they are no-ops in a single process.
- Rank 0 alone touches the run folder (config, log, checkpoints, run.json); what it reads (a checkpoint to
  resume) is broadcast, so other nodes need no shared file system.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fewshot.distributed import all_reduce_mean, is_distributed, rank
from fewshot.errors import FewshotError

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
