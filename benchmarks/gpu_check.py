"""`make gpu-check`: everything fewshot does on a CUDA GPU, in one script of at most 8 minutes, as a JSON summary.

    python benchmarks/gpu_check.py [--out FILE] [--parts tests,throughput,omniglot] [--omniglot-src DIR]
                                   [--omniglot-steps N] [--device cuda] [--budget-seconds 480]

Parts:
- tests: `pytest -m cuda` (tests/test_cuda.py: device selection, bf16/fp16 autocast in training and evaluation,
  pinned non-blocking copies, CUDA evaluation against CPU evaluation within the stated tolerance, a checkpoint
  written on the GPU resumed on the CPU, nccl, torch.compile), each test's outcome in the summary;
- throughput: the training loop's real step against the bare backbone forward+backward+Adam on a pre-built
  batch (benchmarks/bench_train_step.py's Setting, wall clock with torch.cuda.synchronize); goal bare/real >= 0.9;
- omniglot: results/omniglot/reproduce.sh with DEVICE=cuda (scratch WORK and RESULTS, never results/), its
  wall time and test accuracies.

Without a GPU (and without --device cpu) it says so in one line and exits 0. With --device cpu every part runs
on the CPU, which is how its own test checks the script on machines without a GPU (the CUDA tests then skip).
The project runs from this working tree (PYTHONPATH), so the GPU machine needs no install and no network.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THROUGHPUT_GOAL = 0.9  # bare step time / real step time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / "gpu-check.json"), help="JSON summary to write")
    parser.add_argument("--parts", default="tests,throughput,omniglot", help="comma-separated parts to run")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (to check the script itself)")
    parser.add_argument("--omniglot-src", default=str(ROOT.parent / "shared" / "data" / "omniglot"),
                        help="folder with images_background.zip and images_evaluation.zip")
    parser.add_argument("--omniglot-steps", type=int, default=12000,
                        help="training episodes of each Omniglot run (a multiple of 500; the committed runs: 12000)")
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="stop starting parts after this")
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    args = parser.parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path.insert(0, str(ROOT))

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU visible (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "nothing to check here, and the CUDA tests skip")
        return 0
    started = time.perf_counter()
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": args.device,
                     "environment": _environment(torch), "parts": {}}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"tests", "throughput", "omniglot"}
    if unknown:
        print(f"gpu-check: unknown part(s) {', '.join(sorted(unknown))}; choose from tests, throughput, omniglot",
              file=sys.stderr)
        return 2
    for part in parts:
        left = args.budget_seconds - (time.perf_counter() - started)
        if left <= 0:
            summary["parts"][part] = {"status": "skipped", "why": "the time budget was spent"}
            continue
        t0 = time.perf_counter()
        try:
            result = {"tests": run_tests, "throughput": run_throughput, "omniglot": run_omniglot}[part](args, left)
        except Exception as exc:  # one failing part must not hide the others' figures
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        summary["parts"][part] = result
        print(f"gpu-check: {part}: {result.get('status')} in {result['seconds']} s", flush=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["ok"] = all(p.get("status") in ("passed", "met") for p in summary["parts"].values())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"gpu-check: summary in {args.out} ({'all passed' if summary['ok'] else 'see failures'}, "
          f"{summary['seconds']} s)")
    return 0 if summary["ok"] else 1


def _environment(torch) -> dict:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None, "gpus": gpus,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}


def run_tests(args: argparse.Namespace, seconds_left: float) -> dict:
    """pytest -m cuda, outcomes read back from its JUnit XML."""
    report = Path(args.out).with_suffix(".junit.xml")
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={report}", str(ROOT / "tests" / "test_cuda.py")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(30, seconds_left))
    cases = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = child.tag
                cases[case.get("name")] = {"outcome": outcome, "message": (child.get("message") or "")[:500]}
                break
            if child.tag == "skipped":
                outcome = "skipped"
                cases[case.get("name")] = {"outcome": outcome, "message": (child.get("message") or "")[:200]}
                break
        cases.setdefault(case.get("name"), {"outcome": outcome})
    report.unlink(missing_ok=True)
    failed = [n for n, c in cases.items() if c["outcome"] in ("failure", "error")]
    status = "failed" if failed or done.returncode not in (0, 5) else "passed"
    return {"status": status, "cases": cases, "pytest_tail": done.stdout.strip().splitlines()[-1:]}


def run_throughput(args: argparse.Namespace, seconds_left: float) -> dict:
    """Real training step against the bare forward+backward, per setting, in wall time (GPU synchronised)."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_train_step import SETTINGS, Setting, mini_store, omniglot_store

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    stores = {"omniglot": omniglot_store(), "mini": mini_store()}
    rounds, steps = (1, 2) if args.quick else (5, 30)
    figures, worst = {}, None
    for name, (store, method, overrides) in SETTINGS.items():
        setting = Setting(stores[store], method, overrides, device=device)
        for _ in range(3):  # warm-up: cuDNN autotuning, allocator
            setting.real_step()
            setting.bare_step()
        sync()
        best = {"real": float("inf"), "bare": float("inf")}
        for _ in range(rounds):  # interleaved rounds, the best of each
            for kind, step in (("real", setting.real_step), ("bare", setting.bare_step)):
                sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                sync()
                best[kind] = min(best[kind], (time.perf_counter() - t0) / steps)
        images = len(setting.batch.images)
        ratio = best["bare"] / best["real"]
        figures[name] = {"real_step_ms": round(best["real"] * 1e3, 3), "bare_step_ms": round(best["bare"] * 1e3, 3),
                         "real_images_per_s": round(images / best["real"]), "bare_over_real": round(ratio, 3)}
        worst = ratio if worst is None else min(worst, ratio)
        del setting
    return {"status": "met" if worst is not None and worst >= THROUGHPUT_GOAL else "missed",
            "goal": f"bare step time / real step time >= {THROUGHPUT_GOAL}", "worst": round(worst or 0.0, 3),
            "settings": figures}


def run_omniglot(args: argparse.Namespace, seconds_left: float) -> dict:
    """results/omniglot/reproduce.sh with DEVICE set, into a scratch folder; its wall time and table."""
    import tempfile

    src = Path(args.omniglot_src)
    if not (src / "images_background.zip").is_file():
        return {"status": "skipped", "why": f"no Omniglot archives in {src} (pass --omniglot-src)"}
    scratch = Path(tempfile.mkdtemp(prefix="fewshot-gpu-check-"))
    env = {**os.environ, "DEVICE": args.device, "STEPS": str(args.omniglot_steps), "WORK": str(scratch / "work"),
           "RESULTS": str(scratch / "results"), "FEWSHOT": f"{sys.executable} -m fewshot", "PYTHON": sys.executable}
    t0 = time.perf_counter()
    done = subprocess.run(["bash", str(ROOT / "results" / "omniglot" / "reproduce.sh"), str(src)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=max(30, seconds_left))
    wall = time.perf_counter() - t0
    result = {"status": "passed" if done.returncode == 0 else "failed", "wall_seconds": round(wall, 1),
              "steps_a_run": args.omniglot_steps, "scratch": str(scratch)}
    table = scratch / "results" / "table.md"
    if table.is_file():
        result["table"] = table.read_text()
    if done.returncode != 0:
        result["stderr_tail"] = done.stderr.strip().splitlines()[-5:]
    return result


if __name__ == "__main__":
    sys.exit(main())
