"""Training step overhead: the real loop's step against the bare forward+backward of the backbone.

    .venv/bin/python benchmarks/bench_train_step.py [--quick] [--compile] [--json FILE]

The real step is the body of fewshot.train.loop's loop, built from its own pieces: BatchSource.next (sample,
gather, convert), zero_grad, ddp.backward_step (learner.loss under autocast, backward; a plain call
in one process), the finite-loss check, optimizer and scheduler steps and the running sums that feed the
log. The bare step is backbone(x) -> mean -> backward -> Adam step on a batch converted beforehand, same
shape, same memory format. Settings: Conv-4 ProtoNet at 28x28x1 (Omniglot's shape, 60-way 5-shot 5-query,
600 images) and at 84x84x3 (5-way 5-shot 15-query, 100 images), and the siamese (triplet, P x K = 16 x 4)
learner with and without CIR at 28x28x1, on generated stores.

Timing: CPU time of one thread (torch.set_num_threads(1)), interleaved rounds: on a shared machine that is
the work done, whoever else runs. Also printed: wall time with all of torch's threads, noisier here. Both
make the same point when the machine is idle. Variants the loop could use are timed beside: channels_last
off (the default is on) and, with --compile, torch.compile of learner.loss (train.compile=true).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Report, add_common_args, generated_store, header, interleaved, mini_store,  # noqa: E402
                    print_table, warm_pages)

import torch  # noqa: E402

SETTINGS = {
    "protonet 28x28x1, 60w5s5q": ("omniglot", "protonet", ["episodes.ways=60", "episodes.shots=5", "episodes.queries=5"]),
    "protonet 84x84x3, 5w5s15q": ("mini", "protonet", ["episodes.ways=5", "episodes.shots=5", "episodes.queries=15"]),
    "siamese triplet 28x28x1, 16x4": ("omniglot", "siamese-triplet", []),
    "siamese triplet+CIR 28x28x1, 16x4": ("omniglot", "siamese-triplet-cir", []),
}


def omniglot_store() -> Path:
    """Omniglot-shaped: 1,000 classes x 20 images of 28x28x1 uint8."""
    return generated_store("omniglot-like", {"train": (1000, 20)}, shape=(28, 28, 1))


class Setting:
    """A learner, its optimizer and BatchSource as fewshot.train.loop builds them, plus the bare baseline."""

    def __init__(self, store: Path, method: str, overrides: list[str], channels_last: bool = True,
                 compile_loss: bool = False, device: torch.device | None = None) -> None:
        from fewshot.config import load_config
        from fewshot.data.store import Store
        from fewshot.learners import create_learner
        from fewshot.episodes.source import BatchSource
        from fewshot.train import ddp
        from fewshot.train.loop import build_optimizer

        self.device = device or torch.device("cpu")  # benchmarks/gpu_check.py passes cuda
        config = load_config(method, [*overrides, f"train.channels_last={str(channels_last).lower()}",
                                      f"train.compile={str(compile_loss).lower()}", f"train.device={self.device.type}"])
        self.config, t = config, config["train"]
        self.split = Store(store).split("train")
        warm_pages(self.split.images)
        torch.manual_seed(0)
        h, w, c = self.split.image_shape
        self.learner = create_learner(config, c, (h, w), self.split.n_classes).to(self.device)
        if t["channels_last"]:
            self.learner = self.learner.to(memory_format=torch.channels_last)
        self.optimizer, self.scheduler = build_optimizer(self.learner, config)
        self.source = BatchSource(self.learner.batch_kind, self.split, config, config["seed"])
        forward = torch.compile(self.learner.loss) if t["compile"] else self.learner.loss
        self.forward = ddp.wrap_for_training(self.learner, forward, self.device, t["sync_batchnorm"])
        self.learner.train()
        self.running = [0.0, 0.0, 0]
        # The bare baseline: its own copy of the backbone, a batch of the same shape converted once.
        self.batch = self.source.next(self.device, t["channels_last"])
        torch.manual_seed(0)
        self.backbone = create_learner(config, c, (h, w), self.split.n_classes).backbone.to(self.device)
        if t["channels_last"]:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self.bare_optimizer = torch.optim.Adam(self.backbone.parameters(), lr=1e-3)

    def real_step(self, batches=None) -> None:
        """One iteration of fewshot.train.loop's loop (less the progress bar and the periodic log/checkpoint)."""
        from fewshot.device import autocast
        from fewshot.train import ddp

        t = self.config["train"]
        if batches is None:
            batches = [self.source.next(self.device, t["channels_last"]) for _ in range(self.source.batches_per_step)]
        self.optimizer.zero_grad(set_to_none=True)
        loss, metrics = ddp.backward_step(self.forward, batches, lambda: autocast(self.device, t["precision"]))
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss}")
        if t["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(self.learner.parameters(), t["max_grad_norm"])
        self.optimizer.step()
        self.scheduler.step()
        self.running[0] += loss
        self.running[1] += metrics.get("train_acc", math.nan)
        self.running[2] += 1

    def prebuilt_step(self) -> None:
        """The real step on the batch built beforehand: everything but the data."""
        self.real_step([self.batch])

    def next_only(self) -> None:
        self.source.next(self.device, self.config["train"]["channels_last"])

    def bare_step(self) -> None:
        self.bare_optimizer.zero_grad(set_to_none=True)
        self.backbone(self.batch.images).mean().backward()
        self.bare_optimizer.step()


def measure(setting: Setting, rounds: int, min_seconds: float, clock: str, breakdown: bool) -> dict[str, float]:
    methods = {"bare": setting.bare_step, "step": setting.real_step}
    if breakdown:
        methods |= {"prebuilt": setting.prebuilt_step, "next": setting.next_only}
    return interleaved(methods, rounds=rounds, min_seconds=min_seconds, warmup=2, clock=clock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of learner.loss (slow to build)")
    parser.add_argument("--only", help="run the settings whose name contains this text")
    add_common_args(parser)
    args = parser.parse_args()

    from fewshot.device import tune_allocator

    tune_allocator()  # as fewshot.train.loop does
    threads = torch.get_num_threads()
    header("Training step: the real loop step against bare backbone forward+backward+Adam on a pre-built batch")
    report = Report("train_step")
    rounds, min_seconds = (2, 1.0) if args.quick else (3, 2.5)
    stores = {"omniglot": omniglot_store(), "mini": mini_store()}
    worst = 0.0
    rows = []
    for name, (store, method, overrides) in SETTINGS.items():
        if args.only and args.only not in name:
            continue
        setting = Setting(stores[store], method, overrides)
        torch.set_num_threads(1)
        cpu = measure(setting, rounds, min_seconds, "cpu", breakdown=True)
        torch.set_num_threads(threads)
        wall = measure(setting, rounds, min_seconds, "wall", breakdown=False)
        images = len(setting.batch.images)
        ratio = cpu["step"] / cpu["bare"]
        worst = max(worst, ratio)
        rows.append([name, f"{images / cpu['bare']:.0f}", f"{images / cpu['step']:.0f}", f"{ratio:.3f}",
                     f"{cpu['next'] / cpu['bare']:.3f}", f"{cpu['prebuilt'] / cpu['bare']:.3f}",
                     f"{wall['step'] / wall['bare']:.3f}"])
        report.figure(name, {"bare_img_s_cpu": images / cpu["bare"], "step_img_s_cpu": images / cpu["step"],
                             "ratio_cpu": ratio, "next_share": cpu["next"] / cpu["bare"],
                             "prebuilt_ratio": cpu["prebuilt"] / cpu["bare"], "ratio_wall": wall["step"] / wall["bare"]})
        print(f"   {name}: step / bare = {ratio:.3f} (1 thread, CPU), {wall['step'] / wall['bare']:.3f} "
              f"({threads} threads, wall)", flush=True)
        del setting
    print()
    print_table(rows, ["setting", "bare img/s", "step img/s", "step / bare", "next / bare",
                       "step w/o data / bare", f"step / bare, wall {threads} thr"])
    print("   (img/s: forward+backward images a CPU-second of one thread; 'next' is BatchSource.next alone)")

    # Variants the loop could use, timed beside its defaults (1 thread, CPU).
    print("\n   variants (1 thread, CPU time; images/s of the real step):")
    variant_rows = []
    torch.set_num_threads(1)
    for name in ("protonet 28x28x1, 60w5s5q", "protonet 84x84x3, 5w5s15q"):
        if args.only and args.only not in name:
            continue
        store, method, overrides = SETTINGS[name]
        candidates = {"channels_last (default)": Setting(stores[store], method, overrides, channels_last=True),
                      "contiguous NCHW": Setting(stores[store], method, overrides, channels_last=False)}
        if args.compile:
            started = time.perf_counter()
            candidates["channels_last + torch.compile"] = Setting(stores[store], method, overrides, compile_loss=True)
            candidates["channels_last + torch.compile"].real_step()  # compiles
            print(f"   ({name}: torch.compile's first step took {time.perf_counter() - started:.0f} s wall)")
        seconds = interleaved({k: v.real_step for k, v in candidates.items()}, rounds=rounds,
                              min_seconds=min_seconds, warmup=1, clock="cpu")
        images = len(next(iter(candidates.values())).batch.images)
        base = seconds["channels_last (default)"]
        for variant, s in seconds.items():
            variant_rows.append([name, variant, f"{images / s:.0f}", f"{base / s:.2f}"])
        report.figure(f"variants {name}", {k: images / s for k, s in seconds.items()})
    torch.set_num_threads(threads)
    print_table(variant_rows, ["setting", "variant", "step img/s", "speed vs default"])
    print()
    report.target("real step / bare backbone step (worst setting, 1 thread CPU time)", worst, 1.10, False, "x")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
