"""benchmarks/gpu_check.py (`make gpu-check`) checked on the CPU: every part but the CUDA calls themselves."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: gpu-check would run for real")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    done = _run("--out", str(tmp_path / "summary.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().count("\n") == 0 and "no CUDA GPU visible" in done.stdout
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_every_part_runs_on_the_cpu_and_writes_its_summary(tmp_path):
    out = tmp_path / "summary.json"
    done = _run("--device", "cpu", "--quick", "--parts", "tests,throughput,omniglot",
                "--omniglot-src", str(tmp_path / "no-omniglot"), "--out", str(out))
    assert done.returncode in (0, 1), done.stderr  # 1: a part missed its goal (the CPU step is not the GPU's)
    summary = json.loads(out.read_text())
    assert summary["device"] == "cpu" and summary["environment"]["torch"] == torch.__version__
    tests = summary["parts"]["tests"]
    cuda_tests = {"test_device_selection_picks_the_gpu", "test_pinned_non_blocking_copy_equals_the_cpu_conversion",
                  "test_cuda_evaluation_equals_cpu_evaluation", "test_checkpoint_written_on_gpu_resumes_on_cpu",
                  "test_torch_compile_on_gpu", "test_nccl_process_group"}
    assert cuda_tests <= {name.split("[")[0] for name in tests["cases"]}
    if not torch.cuda.is_available():
        assert tests["status"] == "passed" and {c["outcome"] for c in tests["cases"].values()} == {"skipped"}
    throughput = summary["parts"]["throughput"]
    assert throughput["status"] in ("met", "missed") and len(throughput["settings"]) == 4
    for figures in throughput["settings"].values():
        assert figures["real_step_ms"] > 0 and figures["bare_step_ms"] > 0
        assert figures["bare_over_real"] == pytest.approx(figures["bare_step_ms"] / figures["real_step_ms"], rel=1e-2)
    assert summary["parts"]["omniglot"]["status"] == "skipped"
    assert "no Omniglot archives" in summary["parts"]["omniglot"]["why"]


def test_an_unknown_part_is_refused(tmp_path):
    done = _run("--device", "cpu", "--parts", "tests,speed", "--out", str(tmp_path / "s.json"))
    assert done.returncode == 2 and "unknown part(s) speed" in done.stderr
