"""Run every benchmark in this folder, one after another, and summarise their targets.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...] [--skip NAME ...]   (also: make bench)

Each benchmark runs in its own process (its memory figures are its own) with this interpreter; its output
streams through. Benchmarks that report targets (bench_sampling, bench_eval, bench_protocols, bench_heads,
bench_embed, bench_train_step, bench_open_tiered, bench_peers) also write JSON, from which the closing summary is printed. --quick passes --quick to
those that have it (fewer rounds, smaller counts; for a smoke run). Exit status: 0 if every benchmark ran,
1 otherwise (a missed target is reported, not an error: figures on a shared machine vary).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, arguments, understands --quick/--json). Order: cheap and self-contained first.
BENCHMARKS = [
    ("bench_sampling.py", [], True),        # episode sampling vs learn2learn and the bare gather
    ("bench_eval.py", [], True),            # scoring 10k episodes from cached embeddings; memory 10k vs 100k
    ("bench_protocols.py", [], True),       # Meta-Dataset sampling vs plain Python; ragged vs fixed scoring
    ("bench_heads.py", [], True),           # batched logistic head vs the RFS sklearn loop; SimpleShot vs prototypes
    ("bench_embed.py", [], True),           # embed_rows vs the bare forward pass; layout "auto"
    ("bench_train_step.py", [], True),      # real step vs bare forward+backward (ProtoNet, siamese, CIR)
    ("bench_open_store.py", [], False),     # open a miniImageNet-sized store, sample 1,000 episodes
    ("bench_open_tiered.py", [], True),     # tieredImageNet-sized (sparse) store: open, sample, RSS
    ("bench_tiered_convert.py", [], False),  # convert a tieredImageNet-format source (PNG pickles)
    ("bench_distributed.py", [], False),    # 1 process vs N processes training
    ("bench_peers.py", ["--install"], True),  # fewshot eval vs easyfsl and learn2learn (side venvs built if missing)
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer rounds where supported")
    parser.add_argument("--only", nargs="*", help="benchmark names (e.g. bench_eval) to run")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmark names to leave out")
    args = parser.parse_args()
    failed, summaries = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for script, extra, reports in BENCHMARKS:
            name = script.removesuffix(".py")
            if (args.only and name not in args.only) or name in args.skip:
                continue
            if not (HERE / script).exists():
                print(f"\n### {name}: not present, skipped")
                continue
            command = [sys.executable, str(HERE / script), *extra]
            json_path = Path(scratch) / f"{name}.json"
            if reports:
                command += ["--json", str(json_path)] + (["--quick"] if args.quick else [])
            print(f"\n### {name}: {' '.join(command[1:])}", flush=True)
            started = time.perf_counter()
            code = subprocess.call(command)
            print(f"### {name}: exit {code}, {time.perf_counter() - started:.0f} s", flush=True)
            if code != 0:
                failed.append(name)
            if reports and json_path.exists():
                summaries.append(json.loads(json_path.read_text()))
    print("\n### Targets")
    for summary in summaries:
        for t in summary["targets"]:
            state = "met   " if t["met"] else "MISSED"
            print(f"{state} {summary['benchmark']}: {t['what']}: {t['value']:.3g}{t['unit']} "
                  f"(target {t['direction']} {t['limit']:g}{t['unit']})")
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
