"""CUDA paths, run by `make gpu-check` on a machine with a GPU (benchmarks/gpu_check.py); skipped elsewhere.

Each test is marked `cuda` (`pytest -m cuda` selects them). Tolerance of CUDA evaluation against CPU
evaluation: cuDNN's convolutions and TF32-free fp32 matmuls round differently from the CPU kernels, so an
embedding differs by ~1e-6 relative, which can flip a query whose two nearest prototypes are that close:
we require the mean accuracy within 0.5 points and at least 95% of episodes identical.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fewshot.cli import main as cli_main

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible: the CUDA tests skip")]

CUDA_TOLERANCE_POINTS = 0.5
CUDA_IDENTICAL_EPISODES = 0.95


def _tiny(overrides: dict, **more) -> list[str]:
    return [f"{k}={v}" for k, v in {**overrides, "train.device": "cuda", **more}.items()]


def _train(store, out, overrides, *extra, device="cuda") -> int:
    return cli_main(["train", "--config", "protonet", "--data", str(store), "--out", str(out), "--no-progress",
                     "--device", device, *extra, *_tiny(overrides)])


def _episodes(store, path) -> str:
    assert cli_main(["episodes", "--data", str(store), "--split", "test", "--ways", "3", "--shots", "2",
                     "--queries", "2", "--count", "40", "--seed", "0", "--out", str(path)]) == 0
    return str(path)


def _record(path) -> dict:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    return json.loads(files[0].read_text())


def test_device_selection_picks_the_gpu():
    from fewshot.device import resolve_device

    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_training_and_evaluation(tiny_store, tiny_train_overrides, tmp_path, precision):
    run = tmp_path / "run"
    assert _train(tiny_store, run, tiny_train_overrides, "--precision", precision) == 0
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) > 1 and "nan" not in log[-1].split(",")[1]
    episodes = _episodes(tiny_store, tmp_path / "ep.npz")
    assert cli_main(["eval", "--run", str(run), "--episodes", episodes, "--out", str(tmp_path / "rec"),
                     "--device", "cuda", "--precision", precision]) == 0
    record = _record(tmp_path / "rec")
    assert 0.0 < record["mean"] <= 100.0 and len(record["per_episode_accuracy"]) == 40


def test_pinned_non_blocking_copy_equals_the_cpu_conversion():
    from fewshot.device import to_float_images

    batch = torch.randint(0, 256, (8, 28, 28, 1), dtype=torch.uint8)
    on_gpu = to_float_images(batch, torch.device("cuda"), channels_last=True)
    torch.cuda.synchronize()
    assert on_gpu.device.type == "cuda" and on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(on_gpu.cpu(), to_float_images(batch, torch.device("cpu")))


def test_cuda_evaluation_equals_cpu_evaluation(tiny_store, tiny_train_overrides, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_store, run, tiny_train_overrides, device="cpu") == 0
    episodes = _episodes(tiny_store, tmp_path / "ep.npz")
    accuracy = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"rec-{device}.json"
        assert cli_main(["eval", "--run", str(run), "--episodes", episodes, "--out", str(out), "--device", device]) == 0
        accuracy[device] = np.array(_record(out)["per_episode_accuracy"])
    assert abs(accuracy["cpu"].mean() - accuracy["cuda"].mean()) * 100 <= CUDA_TOLERANCE_POINTS
    assert (accuracy["cpu"] == accuracy["cuda"]).mean() >= CUDA_IDENTICAL_EPISODES


def test_checkpoint_written_on_gpu_resumes_on_cpu(tiny_store, tiny_train_overrides, tmp_path, monkeypatch):
    from fewshot.config import load_config
    from fewshot.episodes.source import BatchSource
    from fewshot.runs import load_checkpoint
    from fewshot.train.loop import train

    run = tmp_path / "run"
    overrides = {**tiny_train_overrides, "train.steps": 4, "train.checkpoint_every": 2, "train.device": "cuda"}
    original, calls = BatchSource.next, []

    def stopped_in_step_3(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill would: last.pt holds step 2
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BatchSource, "next", stopped_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(load_config("protonet", overrides), tiny_store, run, progress=False)
    monkeypatch.setattr(BatchSource, "next", original)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["cuda_rng"] is not None and state["step"] == 2
    # The same run, continued on the CPU: --device overrides train.device without changing the config.
    assert _train(tiny_store, run, overrides, "--resume", device="cpu") == 0
    summary = json.loads((run / "run.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 4


def test_torch_compile_on_gpu(tiny_store, tiny_train_overrides, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_store, run, {**tiny_train_overrides, "train.compile": "true", "train.steps": 3}) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_nccl_process_group(tiny_store, tiny_train_overrides, tmp_path):
    """Two GPUs: `fewshot train --nproc 2` on nccl. One GPU: a one-process nccl group's all-reduce and gather."""
    if torch.cuda.device_count() >= 2:
        run = tmp_path / "run"
        overrides = {**tiny_train_overrides, "train.episodes_per_step": 2}
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-m", "fewshot", "train", "--config", "protonet", "--data", str(tiny_store),
                               "--out", str(run), "--no-progress", "--device", "cuda", "--nproc", "2",
                               *_tiny(overrides)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        return
    import torch.distributed as dist

    from fewshot.launch import free_port

    store = dist.TCPStore("127.0.0.1", free_port(), 1, True)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        x = torch.arange(4.0, device="cuda")
        dist.all_reduce(x)
        parts = [torch.empty_like(x)]
        dist.all_gather(parts, x)
        assert torch.equal(parts[0].cpu(), torch.arange(4.0))
    finally:
        dist.destroy_process_group()
