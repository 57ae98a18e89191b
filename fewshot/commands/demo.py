"""`fewshot demo`: the whole path on the embedded synthetic set in a few minutes on 2 CPU cores."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from fewshot.commands.common import add_device, positive_int
from fewshot.config import load_config

DEMO_MARK = ".fewshot-demo"  # in --out: the folder is the demo's own, so re-running may reuse and replace in it

DEMO_PARTS = {"data", "episodes", "run", "results", DEMO_MARK}  # what the demo writes in --out (an older
# demo's folder, from before the mark, holds only these and is taken as the demo's own)

DEMO_OVERRIDES = {"train.steps": 600, "train.val_every": 200, "train.log_every": 50, "episodes.ways": 20,
                  "episodes.shots": 5, "episodes.queries": 5, "optim.step_size": 300}


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="prepare the synthetic set, train ProtoNet, evaluate 5w1s/5w5s, print the table",
                       description="End to end on the embedded synthetic stroke-glyph set: prepare it, train a "
                                   "Conv-4 ProtoNet briefly, evaluate it and the raw-pixel floor on 1,000 fixed "
                                   "test episodes per setting, and print the table. Re-running reuses what exists.")
    p.add_argument("--out", default="demo-output", help="working folder (default ./demo-output)")
    p.add_argument("--steps", type=positive_int, default=DEMO_OVERRIDES["train.steps"], help="training steps")
    p.add_argument("--episodes", type=positive_int, default=1000, help="test episodes per setting")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: training prints a plain line every few log rows instead")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `fewshot --help` and the other verbs need not load torch.
    from fewshot.data.store import Store
    from fewshot.data.synthetic import prepare_synthetic
    from fewshot.episodes.files import load_episode_file, make_episode_file
    from fewshot.evaluate.run import evaluate_pixels, evaluate_run
    from fewshot.results.records import write_record
    from fewshot.results.tables import format_table
    from fewshot.points import train_or_reuse
    from fewshot.errors import FewshotError
    started = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FewshotError(f"--out {out} is a file, not a folder; choose another --out")
    legacy = (out / "data" / "store.json").exists() and {p.name for p in out.iterdir()} <= DEMO_PARTS
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARK).exists() and not legacy:
        raise FewshotError(f"{out} holds files that fewshot demo did not write; choose another --out (an empty or "
                           "new folder)")
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARK).touch()
    data, run_dir, results = out / "data", out / "run", out / "results"
    if not (data / "store.json").exists():
        print(f"[1/4] preparing the synthetic set into {data}")
        prepare_synthetic(data)
    test = Store(data).split("test")
    files = []
    for shots in (1, 5):
        path = out / "episodes" / f"synthetic-test-5w{shots}s-15q-{args.episodes}.npz"
        if not path.exists():
            make_episode_file(test, 5, shots, 15, args.episodes, seed=0, generated_by="fewshot demo").save(path)
        files.append(load_episode_file(path))
    overrides = dict(DEMO_OVERRIDES, **{"train.steps": args.steps})
    if args.precision:
        overrides["train.precision"] = args.precision
    config = load_config("protonet", overrides)
    if not (run_dir / "run.json").exists() or '"finished"' not in (run_dir / "run.json").read_text():
        print(f"[2/4] training ProtoNet (Conv-4, 20-way 5-shot episodes, {args.steps} steps) into {run_dir}")
        # Resumes a stopped run; clears (only) the demo's own run folder stopped before its first checkpoint.
        train_or_reuse(config, data, run_dir, "lines" if args.no_progress else True, args.device, log=lambda line: None)
    print(f"[3/4] evaluating on {args.episodes:,} fixed test episodes per setting (and the raw-pixel floor)")
    records = evaluate_run(run_dir, files, data, args.device) + evaluate_pixels(data, files, args.device)
    for record in records:
        write_record(record, results / f"{record['method']}-{record['setting']}.json")
    print("[4/4] results (accuracy %, mean +- 95% CI over episodes)\n")
    print(format_table(records, "md"))
    from fewshot.report import build_report
    report = build_report(records, out / "report", runs=[run_dir], baseline="pixels", title="fewshot demo")
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; records in {results}; report: {report}")
    return 0
