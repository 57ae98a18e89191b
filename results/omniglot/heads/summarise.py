"""Paired differences and provenance for results/omniglot/heads (run by reproduce.sh after the records).

    python3 summarise.py HERE RUNS STORE

Writes HERE/compare.md (every head against nearest prototype on the same run; cross-entropy + each head against
ProtoNet + nearest prototype and against ProtoNet + the same head: the RFS question; the `fewshot compare`
output of the headline pairs) and HERE/provenance.json (commit, configs and digests, run summaries, store,
episode and record checksums, evaluation seconds).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from fewshot.evaluate.compare import compare_records, format_comparison
from fewshot.results.records import load_records, record_head

HEADS = ["nearest_prototype", "simpleshot", "logistic", "finetune"]
SETTINGS = ["5w1s", "5w5s", "20w1s", "20w5s"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cell(a: dict, b: dict) -> str:
    d = compare_records(a, b).difference
    star = "*" if d.p_ttest < 0.05 else ""
    return f"{d.mean:+.2f} +- {d.ci95:.2f}{star}"


def main() -> int:
    here, runs, store = (Path(p) for p in sys.argv[1:4])
    records = load_records([here / "records"])
    by = {(r["method"], record_head(r)["name"], r["setting"]): r for r in records}
    lines = ["# Paired differences on the same episodes (percent points, A - B)", "",
             "Mean of the per-episode differences +- 1.96 * std / sqrt(n) (ddof 0), 1,000 episodes a column; "
             "* p < 0.05 (paired t-test). Wilcoxon p-values and Student-t intervals: the `fewshot compare` "
             "outputs at the end.", ""]

    def table(title: str, rows: list[tuple[str, tuple, tuple]]) -> None:
        lines.extend([f"## {title}", "", "| A - B | " + " | ".join(SETTINGS) + " |",
                      "|---|" + "---|" * len(SETTINGS)])
        for label, a, b in rows:
            cells = [cell(by[(*a, s)], by[(*b, s)]) if (*a, s) in by and (*b, s) in by else "-" for s in SETTINGS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    for method in ("protonet", "ce"):
        table(f"{method}: each head against nearest prototype",
              [(f"{method} + {h} - {method} + nearest_prototype", (method, h), (method, "nearest_prototype"))
               for h in HEADS[1:]])
    table("cross-entropy against ProtoNet (the RFS question)",
          [(f"ce + {h} - protonet + nearest_prototype", ("ce", h), ("protonet", "nearest_prototype")) for h in HEADS]
          + [(f"ce + {h} - protonet + {h}", ("ce", h), ("protonet", h)) for h in HEADS])
    lines.extend(["## `fewshot compare` of the headline pairs", ""])
    for setting in SETTINGS:
        for a, b in ((("ce", "logistic"), ("protonet", "nearest_prototype")), (("ce", "logistic"), ("protonet", "logistic"))):
            if (*a, setting) in by and (*b, setting) in by:
                lines.extend(["```", format_comparison(compare_records(by[(*a, setting)], by[(*b, setting)])).rstrip(),
                              "```", ""])
    (here / "compare.md").write_text("\n".join(lines))

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    store_meta = json.loads((store / "store.json").read_text())
    provenance = {
        "commit": commit, "tree_modified": dirty,
        "command": "results/omniglot/heads/reproduce.sh",
        "store": {"path": str(store), "source_variant": store_meta.get("source_variant"),
                  "splits": {name: json.loads((store / name / "manifest.json").read_text())["checksum"]
                             for name in ("train", "val", "test")}},
        "runs": {}, "episode_files": {}, "records": {},
    }
    for name in ("protonet", "ce"):
        run = runs / name
        config = json.loads((run / "config.json").read_text())
        summary = json.loads((run / "run.json").read_text())
        provenance["runs"][name] = {
            "config": config, "config_digest": summary.get("config_digest"), "status": summary.get("status"),
            "steps": summary.get("steps"), "best": summary.get("best"), "commit": summary.get("commit"),
            "train_seconds": summary.get("train_seconds_this_session"),
            "best_checkpoint_sha256": sha256(run / "checkpoints" / "best.pt"),
        }
    for r in records:
        path = Path(r["_path"])
        provenance["records"][path.name] = {"sha256": sha256(path), "method": r["method"],
                                            "head": record_head(r)["label"], "setting": r["setting"],
                                            "mean": r["mean"], "eval_seconds": r["provenance"]["eval_seconds"],
                                            "checkpoint": r.get("checkpoint"),
                                            "checkpoint_step": r.get("checkpoint_step")}
        provenance["episode_files"][r["setting"]] = r["provenance"]["episodes_checksum"]
    (here / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {here / 'compare.md'} and {here / 'provenance.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
