"""Training: batches from the store, a learner, Adam + step decay, validation, checkpoints.

One process, or several under torch.distributed (fewshot/train/distributed.py: shares of one global batch,
rank 0 alone writes).

A run folder holds `config.json` (the resolved config), `log.csv`, `checkpoints/last.pt` (everything needed
to resume: weights, optimizer, scheduler, sampler and torch RNG states), `checkpoints/best.pt` (weights of
the best validation step) and `run.json` (status and provenance).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fewshot.atomic import write_json_atomic
from fewshot.config import config_digest
from fewshot.data.store import MappedReader, Store, StoreSplit
from fewshot.device import autocast, resolve_device, to_float_images, tune_allocator
from fewshot.episodes.batches import PKSampler
from fewshot.episodes.sampler import EpisodeSampler
from fewshot.errors import FewshotError
from fewshot.evaluate.episodes import evaluate_episodes
from fewshot.evaluate.stats import mean_ci95
from fewshot.learners import Batch, Learner, create_learner
from fewshot.provenance import environment, git_commit, now
from fewshot.train import distributed
from fewshot.train.checkpoint import load_checkpoint, load_model_state, save_checkpoint

LOG_FIELDS = ["step", "loss", "train_acc", "lr", "val_acc", "val_ci95", "seconds"]


class BatchSource:
    """Turns a sampler's (class, rank) draws into a device batch of the kind the learner wants."""

    def __init__(self, learner: Learner, split: StoreSplit, config: dict, seed: int) -> None:
        self.split = split
        self.kind = learner.batch_kind
        if self.kind == "episode":
            e = config["episodes"]
            self.sampler = EpisodeSampler(split.class_counts, e["ways"], e["shots"], e["queries"], seed,
                                          split.class_names)
        else:
            b = config["batch"]
            self.sampler = PKSampler(split.class_counts, b["classes"], b["per_class"], seed)
        # Every rank draws the whole global batch from this same seeded stream and keeps its share (episodes
        # rank::world, or one block of classes), so the global batch is the same whatever the process count.
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.episodes_per_step = config["train"]["episodes_per_step"]
        if self.kind == "episode":
            self.batches_per_step = distributed.per_rank_share(self.episodes_per_step, "train.episodes_per_step")
        elif self.episodes_per_step != 1:
            raise FewshotError(f"train.episodes_per_step={self.episodes_per_step} is for episodic learners; "
                               f"{config['learner']} trains on PK batches: set batch.classes instead")
        else:
            self.batches_per_step = 1
            self.classes_per_rank = distributed.per_rank_share(config["batch"]["classes"], "batch.classes")
        self._episodes: list = []
        self._buffer: np.ndarray | None = None
        self._reader: MappedReader | None = None
        self._ahead: np.ndarray | None = None  # rows of the episodes of steps drawn ahead (see _next_step)
        if self.kind == "episode":
            s = self.sampler
            self._episode_labels = np.concatenate([np.repeat(np.arange(s.ways), s.shots),
                                                   np.repeat(np.arange(s.ways), s.queries)])

    def rows_and_labels(self) -> tuple[np.ndarray, np.ndarray, dict]:
        if self.kind == "episode":
            rows = self._local_episode()
            s = self.sampler
            return rows, self._episode_labels.copy(), {"ways": s.ways, "shots": s.shots, "queries": s.queries}
        classes, ranks = self.sampler.sample()
        mine = slice(self.rank * self.classes_per_rank, (self.rank + 1) * self.classes_per_rank)
        classes, ranks = classes[mine], ranks[mine]
        rows = (self.split.class_offsets[classes][:, None] + ranks).ravel()
        return rows, np.repeat(classes, ranks.shape[1]), {}

    def next(self, device: torch.device, channels_last: bool) -> Batch:
        rows, labels, shape = self.rows_and_labels()
        images = to_float_images(self.gather(rows), device, channels_last)
        return Batch(images, torch.from_numpy(labels).to(device), self.kind, **shape)

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) images of store `rows`, in a buffer that the next call overwrites.

        One copy from the memmap into a buffer kept across steps, so its pages are never faulted in again
        (np.take's mode="raise" would buffer `out` and copy twice; rows come from the sampler and are in
        range). Sorting the rows first bought nothing: an image is whole pages either way, and the
        permutation back cost a second copy (benchmarks/bench_sampling.py). to_float_images copies the result.
        On splits over 1 GB the reader hands the memory map's pages back every 64 MB read (bounded RSS).
        """
        if self._buffer is None or len(self._buffer) != len(rows):
            self._buffer = np.empty((len(rows), *self.split.image_shape), dtype=np.uint8)
        if self._reader is None:
            self._reader = MappedReader(self.split.images)
        self._reader.take(rows, out=self._buffer, known_in_range=True)
        return torch.from_numpy(self._buffer)

    def _local_episode(self) -> np.ndarray:
        """Store rows (support then query, class-major) of this rank's next episode."""
        if not self._episodes:
            first = self._next_step() * self.episodes_per_step
            self._episodes = [self._ahead[first + i] for i in range(self.rank, self.episodes_per_step, self.world)]
        return self._episodes.pop(0)

    def _next_step(self) -> int:
        """Index, in the block drawn ahead, of the next step's episodes.

        Steps are drawn many at a time with sampler.sample_calls, which gives exactly the episodes of one
        sample(episodes_per_step) call a step: a few numpy calls for a whole block instead of a dozen a step.
        """
        if self._ahead is None or self._ahead_used == len(self._ahead) // self.episodes_per_step:
            draws = self.sampler.draws_per_call(self.episodes_per_step)
            steps = max(1, min(64, (1 << 19) // draws))  # at most ~4 MB of random keys at once
            self._ahead_state = self.sampler.rng.bit_generator.state
            drawn = self.sampler.sample_calls(steps, self.episodes_per_step)
            support, query = drawn.rows(self.split.class_offsets)
            self._ahead = np.concatenate([support.reshape(len(drawn), -1), query.reshape(len(drawn), -1)], axis=1)
            self._ahead_used = 0
        self._ahead_used += 1
        return self._ahead_used - 1

    def state(self) -> dict:
        """The sampler's generator state after the steps taken so far (not after those drawn ahead)."""
        if self.kind != "episode" or self._ahead is None:
            return self.sampler.rng.bit_generator.state
        bits = np.random.PCG64()
        bits.state = self._ahead_state
        bits.advance(self._ahead_used * self.sampler.draws_per_call(self.episodes_per_step))
        return bits.state

    def set_state(self, state: dict) -> None:
        self.sampler.rng.bit_generator.state = state
        self._ahead, self._episodes = None, []


def build_optimizer(learner: Learner, config: dict):
    o = config["optim"]
    # A learner may give some parameters their own rate (the center learner's centers: loss.center_lr_scale).
    params = (learner.parameter_groups(o["lr"]) if hasattr(learner, "parameter_groups")
              else [p for p in learner.parameters() if p.requires_grad])
    if o["name"] == "adam":
        optimizer = torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])
    elif o["name"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"],
                                    nesterov=True)
    else:
        raise FewshotError(f"optim.name {o['name']!r} is not adam or sgd")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o["step_size"], gamma=o["gamma"])
    return optimizer, scheduler


def _check_run_folder(out: Path, config: dict, resume: bool) -> None:
    config_file = out / "config.json"
    if resume:
        if not (out / "checkpoints" / "last.pt").exists():
            raise FewshotError(f"--resume: {out} has no checkpoints/last.pt to resume from")
        saved = json.loads(config_file.read_text())
        if config_digest(saved) != config_digest(config):
            raise FewshotError(f"--resume: the config differs from the one saved in {config_file}; "
                               "resume with the same config and overrides")
    elif out.exists() and any(out.iterdir()):
        raise FewshotError(f"run folder {out} already holds a run; pass --resume to continue it or choose another --out")


def val_episodes(store: Store, config: dict):
    t = config["train"]
    if t["val_split"] not in store.split_names or t["val_every"] <= 0:
        return None, None
    split = store.split(t["val_split"])
    sampler = EpisodeSampler(split.class_counts, min(t["val_ways"], split.n_classes), t["val_shots"],
                             t["val_queries"], config["seed"] + 10_000, split.class_names)
    return split, sampler.sample(t["val_episodes"])


def train(config: dict, data: str | Path, out: str | Path, resume: bool = False, progress: bool = True,
          device_name: str | None = None) -> dict:
    """Train `config` on the store at `data` into run folder `out`; return the run summary.

    Under torchrun (or `fewshot train --nproc N`) every process calls this; see fewshot/train/distributed.py.
    """
    device = distributed.local_device(resolve_device(device_name or config["train"]["device"]))
    with distributed.process_group(device):
        return _train(config, data, out, resume, progress, str(device))


def _train(config: dict, data: str | Path, out: str | Path, resume: bool, progress: bool,
           device_name: str | None) -> dict:
    tune_allocator()
    out = Path(out)
    t = config["train"]
    device = resolve_device(device_name or t["device"])
    store = Store(data)
    split = store.split(t["split"])
    distributed.on_rank0(_check_run_folder, out, config, resume)
    writer = distributed.is_writer()  # rank 0 alone writes the run folder
    torch.manual_seed(config["seed"])
    height, width, channels = split.image_shape
    learner = create_learner(config, channels, (height, width), split.n_classes).to(device)
    if t["channels_last"]:
        learner = learner.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(learner, config)
    source = BatchSource(learner, split, config, config["seed"])
    val_split, val_batch = val_episodes(store, config)
    # Only now, with everything validated, does the run folder get written.
    if writer:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", config)
        write_json_atomic(out / "input.json", {"image_shape": list(split.image_shape), "n_classes": split.n_classes,
                                               "dataset": store.dataset})

    step, best = 0, {"val_acc": -1.0, "step": 0}
    if resume:
        state = distributed.on_rank0(load_checkpoint, out / "checkpoints" / "last.pt")
        load_model_state(learner, state["model"], out / "checkpoints" / "last.pt")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        source.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:  # CIR and dropout draw on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        step, best = state["step"], state["best"]
        if writer:
            _truncate_log(out / "log.csv", step)
    distributed.separate_rank_rng(config["seed"], step)
    forward = torch.compile(learner.loss) if t["compile"] else learner.loss
    forward = distributed.wrap_for_training(learner, forward, device, t["sync_batchnorm"])

    def checkpoint() -> None:
        if not writer:
            return
        save_checkpoint(out / "checkpoints" / "last.pt", {
            "model": learner.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "sampler": source.state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "step": step, "best": best,
        })

    def validate() -> tuple[float, float]:
        distributed.broadcast_buffers(learner)  # one model on all ranks, which share the validation work
        learner.eval()
        acc = evaluate_episodes(learner.embed, val_split, val_batch, device, config["eval"]["distance"],
                                precision=t["precision"], channels_last=t["channels_last"])
        learner.train()
        return mean_ci95(acc)

    log_new = not (out / "log.csv").exists()
    log_file = open(out / "log.csv" if writer else os.devnull, "a", newline="")
    log = csv.DictWriter(log_file, LOG_FIELDS)
    if log_new:
        log.writeheader()
    started = time.perf_counter()
    if writer:
        write_json_atomic(out / "run.json", _summary(config, store, split, "running", step, best, 0.0))
    learner.train()
    bar = tqdm(total=t["steps"], initial=step, disable=not (progress and writer), desc=f"train {config['name']}",
               unit="step")
    # Sums of the step losses/accuracies since the last log row, kept on the device. On a GPU they are read
    # (a host sync) only when a row is logged or a checkpoint is written: a non-finite loss poisons the sum,
    # so it is caught there, before any checkpoint holds weights trained on it. On CPU reading is free, so
    # every step is checked and the error names the exact step.
    running_loss, running_acc, seen = torch.zeros((), dtype=torch.float64, device=device), None, 0
    check_every_step = _reads_loss_every_step(device)
    first_unchecked, last_saved = step + 1, step

    def check_finite(value: torch.Tensor) -> float:
        nonlocal first_unchecked
        total = float(value)
        if not math.isfinite(total):
            when = f"at step {step}" if first_unchecked == step else f"between steps {first_unchecked} and {step}"
            saved = (f"The last good checkpoint is {out / 'checkpoints' / 'last.pt'} (step {last_saved})"
                     if last_saved > 0 else "No checkpoint was written before it")
            raise FewshotError(f"loss became {total} {when}; stopped. {saved}; lower optim.lr or check the data")
        first_unchecked = step + 1
        return total

    try:
        while step < t["steps"]:
            batches = [source.next(device, t["channels_last"]) for _ in range(source.batches_per_step)]
            optimizer.zero_grad(set_to_none=True)
            # Forward and backward of this rank's batches; loss and metrics come back as global means.
            loss, metrics = distributed.backward_step(forward, batches, lambda: autocast(device, t["precision"]))
            if t["max_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), t["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            step += 1
            if check_every_step:
                check_finite(loss)
            running_loss += loss
            if "train_acc" in metrics:
                running_acc = metrics["train_acc"] if running_acc is None else running_acc + metrics["train_acc"]
            seen += 1
            bar.update(1)
            row = None
            if step % t["log_every"] == 0 or step == t["steps"]:
                row = {"step": step, "loss": check_finite(running_loss) / seen,
                       "train_acc": float(running_acc) / seen if running_acc is not None else math.nan,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 2)}
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                running_loss.zero_()
                running_acc, seen = None, 0
            if val_batch is not None and (step % t["val_every"] == 0 or step == t["steps"]):
                val_acc, val_ci = validate()
                row = row or {"step": step, "lr": optimizer.param_groups[0]["lr"],
                              "seconds": round(time.perf_counter() - started, 2)}
                row.update(val_acc=round(val_acc, 3), val_ci95=round(val_ci, 3))
                bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", val=f"{val_acc:.2f}")
                if val_acc > best["val_acc"]:
                    best = {"val_acc": val_acc, "step": step}
                    if writer:
                        save_checkpoint(out / "checkpoints" / "best.pt",
                                        {"model": learner.state_dict(), "step": step})
            if row is not None:
                log.writerow(row)
                log_file.flush()
            save_last = step % t["checkpoint_every"] == 0 or step == t["steps"]
            keep = t["keep_every"] > 0 and step % t["keep_every"] == 0
            if save_last or keep:  # no weights are written that were trained on a non-finite loss
                check_finite(running_loss)
            if save_last:
                checkpoint()
                last_saved = step
            if keep and writer:
                save_checkpoint(out / "checkpoints" / f"step-{step}.pt", {"model": learner.state_dict(), "step": step})
    finally:
        bar.close()
        log_file.close()
    if val_batch is None:
        if writer:
            save_checkpoint(out / "checkpoints" / "best.pt", {"model": learner.state_dict(), "step": step})
        best = {"val_acc": None, "step": step}
    summary = _summary(config, store, split, "finished", step, best, time.perf_counter() - started)
    if writer:
        write_json_atomic(out / "run.json", summary)
    return summary


def _reads_loss_every_step(device: torch.device) -> bool:
    """Whether the loop reads each step's loss (free on CPU; a host sync on a GPU, so there it waits for logs)."""
    return device.type == "cpu"


def _summary(config: dict, store: Store, split: StoreSplit, status: str, step: int, best: dict,
             seconds: float) -> dict:
    return {
        "status": status,
        "method": config["name"],
        "config_digest": config_digest(config),
        "steps": step,
        "best": best,
        "train_seconds_this_session": round(seconds, 2),
        "data": str(store.root),
        "dataset": store.dataset,
        "train_split_checksum": split.checksum,
        "commit": git_commit(),
        "environment": environment(),
        "time": now(),
    }


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from, so the log has no duplicated steps."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def checkpoint_name(which: str) -> str:
    """'best', 'last' or 'step-N' (N >= 1, a step kept with train.keep_every), checked; the file's stem."""
    if which in ("best", "last"):
        return which
    number = which.removeprefix("step-")
    if number != which and number.isdigit() and int(number) > 0:
        return f"step-{int(number)}"
    raise FewshotError(f"checkpoint {which!r} is not best, last or step-N (a step kept with train.keep_every)")


def load_run(run: str | Path, which: str = "best", device: torch.device | None = None):
    """Rebuild a trained learner from a run folder: (learner in eval mode, config, run summary).

    `which` is best (the best validation step, or the last step of a run without validation), last, or
    step-N, the weights of step N kept by train.keep_every.
    """
    run = Path(run)
    config_file = run / "config.json"
    if not config_file.exists():
        raise FewshotError(f"{run} is not a run folder (no config.json); train one with `fewshot train`")
    config = json.loads(config_file.read_text())
    summary = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    name = checkpoint_name(which)
    ckpt_path = run / "checkpoints" / f"{name}.pt"
    if name.startswith("step-") and not ckpt_path.is_file():
        kept = sorted(int(p.stem[5:]) for p in (run / "checkpoints").glob("step-*.pt") if p.stem[5:].isdigit())
        raise FewshotError(f"{run} kept no weights of {which} (kept steps: {', '.join(map(str, kept)) or 'none'}; "
                           "train with train.keep_every=N to keep every N-th step)")
    state = load_checkpoint(ckpt_path)
    if not (run / "input.json").exists():
        raise FewshotError(f"{run} has no input.json describing its input shape; train again")
    meta = json.loads((run / "input.json").read_text())
    h, w, c = meta["image_shape"]
    learner = create_learner(config, c, (h, w), meta["n_classes"])
    load_model_state(learner, state["model"], ckpt_path)
    learner.eval()
    if device is not None:
        learner.to(device)
    return learner, config, {**summary, "checkpoint_step": state.get("step")}
