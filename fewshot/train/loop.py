"""Training: batches from the store, a learner, Adam + step decay, validation, checkpoints.

One process, or several under torch.distributed (fewshot/train/ddp.py: shares of one global batch, rank 0
alone writes). Batches come from fewshot/episodes/source.py; run folders are read back by fewshot/runs/.

A run folder holds `config.json` (the resolved config), `log.csv`, `checkpoints/last.pt` (everything needed
to resume: weights, optimizer, scheduler, sampler and torch RNG states), `checkpoints/best.pt` (weights of
the best validation step) and `run.json` (status and provenance).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from fewshot import distributed
from fewshot.atomic import write_json_atomic, write_text_atomic
from fewshot.config import LATE_KEYS, config_digest, flat
from fewshot.data.store import Store, StoreSplit
from fewshot.device import autocast, resolve_device, tune_allocator
from fewshot.episodes.sampler import EpisodeSampler
from fewshot.episodes.source import BatchSource
from fewshot.errors import FewshotError, environment_error
from fewshot.evaluate.distributed import evaluate_episodes
from fewshot.layout import resolve_channels_last
from fewshot.learners import Learner, create_learner
from fewshot.locks import LOCK_NAME, hold_folder
from fewshot.memory import is_out_of_memory, out_of_memory_message
from fewshot.provenance import environment, git_commit, now
from fewshot.runs.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from fewshot.runs.folder import read_run_file
from fewshot.stats import mean_ci95
from fewshot.train.ddp import backward_step, separate_rank_rng, wrap_for_training
from fewshot.train.progress import TrainingProgress
from fewshot.train.tensorboard import ScalarLog

LOG_FIELDS = ["step", "loss", "train_acc", "lr", "val_acc", "val_ci95", "seconds"]


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
        saved = read_run_file(out, "config.json")
        if config_digest(saved) != config_digest(config):
            check_resumable(saved, config, config_file)
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise FewshotError(f"run folder {out} already holds a run; pass --resume to continue it or choose another --out")


# Keys that may differ when a run is resumed: train.steps, upwards only. The schedule (StepLR) and the samplers
# count steps and never look at the total, so a run extended from S to N steps is the run of N steps (on
# CPU, exactly; tests/train/test_resume.py). A schedule that depends on the total would have to refuse it.
EXTENDABLE = "train.steps"


def check_resumable(saved: dict, config: dict, config_file: Path) -> None:
    """Refuse a resume whose config differs from the saved one, naming the keys, unless only train.steps grew."""
    old, new = {**LATE_KEYS, **flat(saved)}, {**LATE_KEYS, **flat(config)}  # a late key absent is its default
    differ = sorted(k for k in old.keys() | new.keys() if k != "train.keep_every" and old.get(k) != new.get(k))
    if differ == [EXTENDABLE] and new[EXTENDABLE] > old[EXTENDABLE]:
        return  # extending the run: it continues to the new train.steps
    shown = "; ".join(f"{k} = {old.get(k, '(absent)')!r} there, {new.get(k, '(absent)')!r} now" for k in differ[:5])
    more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
    shorter = (" (train.steps can only grow: read an earlier step with `fewshot eval --checkpoint step-N`)"
               if EXTENDABLE in differ and new[EXTENDABLE] < old[EXTENDABLE] else "")
    raise FewshotError(f"--resume: the config differs from {config_file} in {shown}{more}{shorter}; resume with "
                       f"the same config and overrides, e.g. `--config {config_file} --resume`, where only "
                       "train.steps may be raised to extend the run")


def _claim_run_folder(claim: ExitStack, out: Path, config: dict, resume: bool) -> None:
    """Hold the run folder for this run (another live `train` on it is refused with its pid), then check it."""
    if out.exists() and not out.is_dir():
        raise FewshotError(f"--out {out} is a file, not a run folder; choose another --out")
    claim.enter_context(hold_folder(out, "train"))
    _check_run_folder(out, config, resume)


def val_episodes(store: Store, config: dict):
    t = config["train"]
    if t["val_split"] not in store.split_names or t["val_every"] <= 0:
        return None, None
    split = store.split(t["val_split"])
    # Refused, not clamped, when the split is too small: config.json must say what validation used.
    sampler = EpisodeSampler(split.class_counts, t["val_ways"], t["val_shots"], t["val_queries"],
                             config["seed"] + 10_000, split.class_names, f"{split.name} split (validation)",
                             ("train.val_ways", "train.val_shots", "train.val_queries"))
    return split, sampler.sample(t["val_episodes"])


def train(config: dict, data: str | Path, out: str | Path, resume: bool = False, progress: bool | str = True,
          device_name: str | None = None) -> dict:
    """Train `config` on the store at `data` into run folder `out`; return the run summary.

    `progress`: True (a bar on a terminal, plain lines otherwise), "lines", or False (nothing); see
    fewshot/train/progress.py. With `resume`, the config may differ from the saved one only by a larger
    train.steps, which extends the run.

    Under torchrun (or `fewshot train --nproc N`) every process calls this; see fewshot/train/ddp.py.
    """
    device = distributed.local_device(resolve_device(device_name or config["train"]["device"]))
    with distributed.process_group(device):
        return _train(config, data, out, resume, progress, str(device))


def _train(config: dict, data: str | Path, out: str | Path, resume: bool, progress: bool | str,
           device_name: str | None) -> dict:
    tune_allocator()
    with ExitStack() as claim:  # the run folder's lock, held until the run ends however it ends
        run = _TrainingRun(config, data, out, resume, device_name, claim)
        try:
            run.write_run_folder()
            if resume:
                run.restore_checkpoint()
            run.prepare_forward()
            run.run_steps(progress)
            return run.finish()
        except OSError as exc:  # disk full, folder made read-only under us
            error = environment_error(exc, _how_to_continue(run, resume))
            if error is None:
                raise
            raise error from None
        except (MemoryError, RuntimeError) as exc:  # a step that does not fit (often only on a GPU)
            if not is_out_of_memory(exc):
                raise
            raise FewshotError(f"at step {run.step + 1}: {out_of_memory_message(exc)}; then "
                               f"{_how_to_continue(run, resume)}") from None


class _TrainingRun:
    """One training run, as a few named steps that `_train` calls top to bottom.

    Building everything (store, learner, optimizer, batch source, validation episodes) validates the config
    before the run folder is touched, so a refused run leaves nothing behind. The order of construction is
    the order torch's and numpy's seeded streams are consumed in: changing it changes the weights.
    """

    def __init__(self, config: dict, data: str | Path, out: str | Path, resume: bool,
                 device_name: str | None, claim: ExitStack | None = None) -> None:
        self.config, self.out, self.t = config, Path(out), config["train"]
        self.device = resolve_device(device_name or self.t["device"])
        self.store = Store(data)
        self.split = self.store.split(self.t["split"])
        distributed.on_rank0(_claim_run_folder, claim or ExitStack(), self.out, config, resume)
        self.writer = distributed.is_writer()  # rank 0 alone writes the run folder
        torch.manual_seed(config["seed"])
        height, width, channels = self.split.image_shape
        self.learner = create_learner(config, channels, (height, width), self.split.n_classes).to(self.device)
        # train.channels_last true, false or "auto" (the faster layout on this machine, timed once and cached).
        self.channels_last = resolve_channels_last(self.t["channels_last"], self.learner, (channels, height, width),
                                                   self.device, batch=256, mode="train",
                                                   backbone=json.dumps(config["backbone"], sort_keys=True),
                                                   forward=self.learner.embed)
        if self.channels_last:
            self.learner = self.learner.to(memory_format=torch.channels_last)
        self.optimizer, self.scheduler = build_optimizer(self.learner, config)
        self.source = BatchSource(self.learner.batch_kind, self.split, config, config["seed"])
        self.val_split, self.val_batch = val_episodes(self.store, config)
        # Before the run folder is written: a missing tensorboard package then fails with nothing written.
        self.scalars = ScalarLog(self.out, config, self.learner.batch_kind,
                                 enabled=self.writer and self.t.get("tensorboard", False))
        self.step, self.best = 0, {"val_acc": -1.0, "step": 0}
        self.started = time.perf_counter()

    def write_run_folder(self) -> None:
        """Only now, with everything validated, does the run folder get written."""
        if not self.writer:
            return
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "config.json", self.config)
        write_json_atomic(self.out / "input.json", {"image_shape": list(self.split.image_shape),
                                                    "n_classes": self.split.n_classes, "dataset": self.store.dataset})

    def restore_checkpoint(self) -> None:
        """Continue from checkpoints/last.pt: weights, optimizer, schedule, sampler and RNG states, step, best."""
        path = self.out / "checkpoints" / "last.pt"
        state = distributed.on_rank0(load_checkpoint, path)
        load_model_state(self.learner, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.source.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:  # CIR and dropout draw on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.best = state["step"], state["best"]
        self.scalars.resume_from(self.step)
        if self.writer:
            _truncate_log(self.out / "log.csv", self.step)

    def prepare_forward(self) -> None:
        """The loss function each step calls: compiled if asked, wrapped in DDP across processes."""
        separate_rank_rng(self.config["seed"], self.step)
        forward = torch.compile(self.learner.loss) if self.t["compile"] else self.learner.loss
        self.forward = wrap_for_training(self.learner, forward, self.device, self.t["sync_batchnorm"])

    def run_steps(self, progress: bool | str) -> None:
        """Train up to train.steps: each step, then its log row, validation and checkpoints."""
        t = self.t
        self.started = time.perf_counter()
        if self.writer:
            write_json_atomic(self.out / "run.json", self.summary("running", 0.0))
        self.learner.train()
        self.log = _StepLog(self.out, self.writer, self.device, self.step)
        shown = TrainingProgress(progress, t["steps"], self.step, f"train {self.config['name']}", t["log_every"],
                                 enabled=self.writer)
        try:
            while self.step < t["steps"]:
                loss, metrics = self.train_step()
                self.log.add(self.step, loss, metrics)
                row, val_acc = None, None
                if self.step % t["log_every"] == 0 or self.step == t["steps"]:
                    row = self.log.row(self.step, self.lr, self.seconds)
                if self.val_batch is not None and (self.step % t["val_every"] == 0 or self.step == t["steps"]):
                    row = row or {"step": self.step, "lr": self.lr, "seconds": self.seconds}
                    val_acc = self.validate_and_keep_best(row)
                shown.update(self.step, None if row is None else row.get("loss"), val_acc)
                if row is not None:
                    self.log.write(row)
                    self.scalars.write(row)
                self.save_checkpoints()
        finally:
            shown.close()
            self.log.close()
            self.scalars.close()

    def train_step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step on this rank's batches; loss and metrics come back as global means."""
        t = self.t
        batches = [self.source.next(self.device, self.channels_last) for _ in range(self.source.batches_per_step)]
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = backward_step(self.forward, batches, lambda: autocast(self.device, t["precision"]))
        if t["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(self.learner.parameters(), t["max_grad_norm"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss, metrics

    def validate_and_keep_best(self, row: dict) -> float:
        """Validation accuracy into `row`; a new best writes checkpoints/best.pt."""
        distributed.broadcast_buffers(self.learner)  # one model on all ranks, which share the validation work
        self.learner.eval()
        acc = evaluate_episodes(self.learner.embed, self.val_split, self.val_batch, self.device,
                                self.config["eval"]["distance"], precision=self.t["precision"],
                                channels_last=self.channels_last)
        self.learner.train()
        val_acc, val_ci = mean_ci95(acc)
        row.update(val_acc=round(val_acc, 3), val_ci95=round(val_ci, 3))
        if val_acc > self.best["val_acc"]:
            self.best = {"val_acc": val_acc, "step": self.step}
            if self.writer:
                save_checkpoint(self.out / "checkpoints" / "best.pt",
                                {"model": self.learner.state_dict(), "step": self.step})
        return val_acc

    def save_checkpoints(self) -> None:
        """last.pt every train.checkpoint_every steps and at the end; step-N.pt every train.keep_every."""
        t, step = self.t, self.step
        save_last = step % t["checkpoint_every"] == 0 or step == t["steps"]
        keep = t["keep_every"] > 0 and step % t["keep_every"] == 0
        if save_last or keep:  # no weights are written that were trained on a non-finite loss
            self.log.check_finite(step)
        if save_last:
            if self.writer:
                save_checkpoint(self.out / "checkpoints" / "last.pt", {
                    "model": self.learner.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "sampler": self.source.state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                    "step": step, "best": self.best,
                })
            self.log.last_saved = step
        if keep and self.writer:
            save_checkpoint(self.out / "checkpoints" / f"step-{step}.pt",
                            {"model": self.learner.state_dict(), "step": step})

    def finish(self) -> dict:
        """A run without validation takes its last weights as best; run.json says finished."""
        if self.val_batch is None:
            if self.writer:
                save_checkpoint(self.out / "checkpoints" / "best.pt",
                                {"model": self.learner.state_dict(), "step": self.step})
            self.best = {"val_acc": None, "step": self.step}
        summary = self.summary("finished", time.perf_counter() - self.started)
        if self.writer:
            write_json_atomic(self.out / "run.json", summary)
        return summary

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 2)

    def summary(self, status: str, seconds: float) -> dict:
        return _summary(self.config, self.store, self.split, status, self.step, self.best, seconds)


class _StepLog:
    """log.csv rows, and the sums of the step losses and accuracies since the last row.

    The sums stay on the device. On a GPU they are read (a host sync) only when a row is logged or a
    checkpoint is written: a non-finite loss poisons the sum, so it is caught there, before any checkpoint
    holds weights trained on it. On CPU reading is free, so every step is checked and the error names the
    exact step.
    """

    def __init__(self, out: Path, writer: bool, device: torch.device, step: int) -> None:
        self.out = out
        new = not (out / "log.csv").exists()
        self.file = open(out / "log.csv" if writer else os.devnull, "a", newline="")
        self.csv = csv.DictWriter(self.file, LOG_FIELDS)
        if new:
            self.csv.writeheader()
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.acc: torch.Tensor | None = None
        self.seen = 0
        self.every_step = _reads_loss_every_step(device)
        self.first_unchecked, self.last_saved = step + 1, step

    def add(self, step: int, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        if self.every_step:
            self._finite(loss, step)
        self.loss += loss
        if "train_acc" in metrics:
            self.acc = metrics["train_acc"] if self.acc is None else self.acc + metrics["train_acc"]
        self.seen += 1

    def row(self, step: int, lr: float, seconds: float) -> dict:
        """The row of the steps since the last one (mean loss and accuracy); the sums start again."""
        row = {"step": step, "loss": self._finite(self.loss, step) / self.seen,
               "train_acc": float(self.acc) / self.seen if self.acc is not None else math.nan,
               "lr": lr, "seconds": seconds}
        self.loss.zero_()
        self.acc, self.seen = None, 0
        return row

    def check_finite(self, step: int) -> None:
        self._finite(self.loss, step)

    def _finite(self, value: torch.Tensor, step: int) -> float:
        total = float(value)
        if not math.isfinite(total):
            when = (f"at step {step}" if self.first_unchecked == step
                    else f"between steps {self.first_unchecked} and {step}")
            saved = (f"The last good checkpoint is {self.out / 'checkpoints' / 'last.pt'} (step {self.last_saved})"
                     if self.last_saved > 0 else "No checkpoint was written before it")
            raise FewshotError(f"loss became {total} {when}; stopped. {saved}; lower optim.lr or check the data")
        self.first_unchecked = step + 1
        return total

    def write(self, row: dict) -> None:
        self.csv.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


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


def _how_to_continue(run: _TrainingRun, resume: bool) -> str:
    """After an environment failure: continue from last.pt, or (none yet) clear what this run wrote."""
    if not run.writer:
        return "run the same command again"
    if (run.out / "checkpoints" / "last.pt").exists():
        return "run the same command with --resume (the last checkpoint is kept)"
    if not resume:  # nothing to resume: remove this run's own files, so the same command starts afresh
        for name in ("config.json", "input.json", "log.csv", "run.json"):
            (run.out / name).unlink(missing_ok=True)
        for path in (run.out / "checkpoints").glob("*.pt"):
            path.unlink(missing_ok=True)
        try:
            (run.out / "checkpoints").rmdir()
        except OSError:
            pass
    return "run the same command again (the unfinished run's files were removed)"


def _log_step(row: dict) -> int | None:
    """A log row's step, or None for a torn or edited row (a write cut short by a full disk or a kill)."""
    try:
        return int(row["step"]) if len(row) == len(LOG_FIELDS) and None not in row.values() else None
    except (TypeError, ValueError, KeyError):
        return None


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (and torn rows), so no step is duplicated.

    Written atomically: a disk that is full again cannot cut the log short."""
    if not path.exists():
        return
    with open(path, newline="", errors="replace") as handle:
        rows = [r for r in csv.DictReader(handle) if (kept := _log_step(r)) is not None and kept <= step]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
