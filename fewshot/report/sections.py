"""The report's sections: plain data for the template, figures written as PNG files beside it.

Every number comes from the code the other verbs use: table cells, bold and ties from
fewshot/results/tables.py (`summarise`, `table_grid`), paired differences from `fewshot compare`'s
`compare_records`, intervals from fewshot/stats.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fewshot.config import config_digest
from fewshot.evaluate.compare import compare_records
from fewshot.stats import CI_DESCRIPTIONS, mean_interval
from fewshot.report.runs import RunIndex
from fewshot.results.curves import describe_values, plot_learning_curves, read_config, run_labels
from fewshot.results.plots import plot_by_factor, plot_distributions, plot_forest, plot_sweep
from fewshot.results.tables import TableData, results_frame, summarise, table_grid, table_header

PM = "\u00b1"
# Per-episode factors a record may carry (one value an episode, aligned with per_episode_accuracy).
EPISODE_FACTORS = {"ways": "episode_ways", "shots": "episode_shots"}
# More runs than this in one learning-curve figure get one figure a method instead.
RUNS_PER_FIGURE = 8


@dataclass
class Image:
    src: str  # relative to index.html
    alt: str
    caption: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list
    caption: str
    data: TableData | None = None


@dataclass
class Curves:
    title: str
    images: list[Image] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)  # label, named run path
    no_run: list[str] = field(default_factory=list)  # methods without a training run (the pixel floor)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-") or "x"


def record_columns(records: list[dict]) -> list[str]:
    """Each record's table column (setting, or `dataset setting` where datasets differ), as tables name it."""
    return list(results_frame(records)["column"])


def results_table(records: list[dict], ci: str, baseline: str | None, decimals: int,
                  order: list[str] | None = None, head_rows: bool = True) -> Table:
    """`head_rows` False: rows are the records' methods even where their heads differ (an ablation's grid
    points, a sweep of eval.head among them, are named by their point already)."""
    data = summarise(records, ci=ci, baseline=baseline, order=order, head_rows=head_rows)
    return Table(table_header(data), table_grid(data, decimals, PM), data.caption().replace("+-", PM), data)


def distributions(data: TableData, out: Path, name: str) -> Image:
    """Violins of the per-episode accuracies behind each cell (several seeds: their per-episode mean)."""
    index = data.cells.set_index(["row", "column"])
    panels: dict[str, list[tuple[str, list[float]]]] = {}
    for column in data.columns:
        for row in data.rows:
            if (row, column) in index.index:
                cell = index.loc[(row, column)]
                label = row if cell["n_seeds"] == 1 else f"{row} ({cell['n_seeds']} seeds)"
                panels.setdefault(column, []).append((label, list(np.asarray(cell["accuracy"]) * 100.0)))
    path = plot_distributions(panels, out / f"{name}.png", "per-episode test accuracy")
    return Image(f"img/{path.name}", "violin and box plots of per-episode accuracy for each method and setting",
                 "Per-episode accuracy (%) of each method and setting: violin (density), box (quartiles, whiskers "
                 "1.5 IQR), white dot (mean, the table's number). Rows with several seeds: each episode's "
                 "accuracy averaged over the seeds.")


def _seed_mean(records: list[dict]) -> tuple[dict, str]:
    """The record itself, or a record of the per-episode accuracy averaged over its seeds (same episodes)."""
    if len(records) == 1:
        return records[0], ""
    first = records[0]
    mean = np.mean([np.asarray(r["per_episode_accuracy"], dtype=np.float64) for r in records], axis=0)
    return ({**first, "per_episode_accuracy": mean.tolist(), "provenance": {**first["provenance"], "seed": None},
             "_path": f"the mean of {len(records)} seeds of {first['method']}"}, f" (mean of {len(records)} seeds)")


def _p(p: float) -> str:
    return "< 1e-300" if p == 0 else f"{p:.4g}"  # a t-test p that underflows prints as 0 otherwise


def paired_differences(records: list[dict], data: TableData, baseline: str, ci: str) -> list[dict]:
    """`fewshot compare METHOD BASELINE` for every method and column (several seeds: their per-episode mean,
    as the table's 'vs' column does)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record, column in zip(records, record_columns(records)):
        groups.setdefault((record["method"], column), []).append(record)
    methods = list(dict.fromkeys(data.cells.set_index("row").loc[data.rows, "method"]))
    rows = []
    for column in data.columns:
        if (baseline, column) not in groups:
            continue
        base, _ = _seed_mean(groups[(baseline, column)])
        for method in methods:
            if method == baseline or (method, column) not in groups:
                continue
            a, note = _seed_mean(groups[(method, column)])
            c = compare_records(a, base)
            d = c.difference
            half = d.half_width(ci)
            rows.append({"label": f"{method}{note}", "column": column, "n": d.n, "mean_a": c.mean_a,
                         "mean_b": c.mean_b, "diff": d.mean, "ci95": d.ci95, "ci95_t": d.ci95_t,
                         "low": d.mean - half, "high": d.mean + half, "p": d.p_ttest, "p_wilcoxon": d.p_wilcoxon,
                         "p_text": _p(d.p_ttest), "p_wilcoxon_text": _p(d.p_wilcoxon)})
    return rows


def forest(rows: list[dict], baseline: str, ci: str, out: Path, name: str) -> Image:
    path = plot_forest(pd.DataFrame(rows), out / f"{name}.png", baseline, CI_DESCRIPTIONS[ci].split(":")[0])
    return Image(f"img/{path.name}", f"forest plot of paired differences from {baseline}",
                 f"Paired per-episode difference from {baseline} on the same episodes (percent points), with the "
                 f"{CI_DESCRIPTIONS[ci]}; p: two-sided paired t-test; filled red where p < 0.05.")


def by_factor(records: list[dict], data: TableData, ci: str, out: Path, name: str) -> list[Image]:
    """Accuracy by the episode's ways and by its shots, where records carry them per episode and they vary."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record, column in zip(records, record_columns(records)):
        groups.setdefault((record["method"], column), []).append(record)
    index = data.cells.set_index(["method", "column"])
    images = []
    for factor, key in EPISODE_FACTORS.items():
        points = []
        seen: set = set()
        for (method, column), group in groups.items():
            values = group[0].get(key)
            if values is None or len(values) != len(group[0]["per_episode_accuracy"]):
                continue
            values = np.asarray(values)
            seen.update(values.tolist())
            accuracy = np.asarray(index.loc[(method, column), "accuracy"])
            if accuracy.ndim != 1:  # a method named twice in one column (per-seed rows): skip, not guess
                continue
            for value in sorted(set(values.tolist())):
                chosen = accuracy[values == value]
                mean, half = mean_interval(chosen, ci)
                points.append({"method": method, "column": column, "value": value, "mean": mean,
                               "half": 0.0 if np.isnan(half) else half, "n": int(chosen.size)})
        if len(seen) > 1 and points:
            path = plot_by_factor(pd.DataFrame(points), factor, out / f"{name}-by-{factor}.png",
                                  f"accuracy by {factor} of the episode")
            images.append(Image(f"img/{path.name}", f"accuracy by {factor}",
                                f"Accuracy (%) by the episode's {factor}: mean {PM} {CI_DESCRIPTIONS[ci]} over the "
                                f"episodes with that many {factor}."))
    return images


def _is_baseline_label(method: str) -> bool:
    # fewshot/ablate.py names its points outside the grid "baseline" or "baseline N".
    return method == "baseline" or method.startswith("baseline ")


def _level_key(value) -> tuple:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, str(value))


def ablation(name: str, records: list[dict], ci: str, decimals: int, out: Path) -> dict:
    """An ablation's table (rows in grid order, paired differences from its baseline point) and its plot."""
    points = {r["method"]: (r.get("ablation") or {}).get("point") or {} for r in records}
    grid_labels = [m for m in points if not _is_baseline_label(m)]
    keys = list(dict.fromkeys(k for m in grid_labels for k in points[m]))
    levels = {k: sorted({json.dumps(points[m].get(k)) for m in grid_labels}, key=lambda v: _level_key(json.loads(v)))
              for k in keys}
    levels = {k: [json.loads(v) for v in values] for k, values in levels.items()}

    def position(label: str) -> tuple:
        return tuple(levels[k].index(points[label].get(k)) if points[label].get(k) in levels[k] else -1 for k in keys)

    baselines = [m for m in points if _is_baseline_label(m)]
    order = sorted(baselines) + sorted(grid_labels, key=position)
    baseline = "baseline" if "baseline" in points else None
    table = results_table(records, ci, baseline, decimals, order, head_rows=False)  # as the ablation's own table
    data = table.data
    swept, references = [], []
    for _, cell in data.cells.iterrows():
        row = {"column": cell["column"], "mean": cell["mean"], "half": cell["half"]}
        if _is_baseline_label(cell["method"]):
            references.append({**row, "label": f"{cell['method']}: {describe_values(points[cell['method']])}"})
        elif all(k in points[cell["method"]] for k in keys):
            swept.append({**points[cell["method"]], **row})
    image = None
    if swept:
        by_column = lambda rows: sorted(rows, key=lambda r: data.columns.index(r["column"]))  # noqa: E731
        path = plot_sweep(pd.DataFrame(by_column(swept)), keys, out / f"ablation-{_slug(name)}.png", levels=levels,
                          title=f"{name} (test accuracy, mean {PM} 95% CI)",
                          references=pd.DataFrame(by_column(references)) if references else None)
        image = Image(f"img/{path.name}", f"ablation plot of {name}",
                      f"Test accuracy (mean {PM} 95% CI) against each swept key, one line per value of the other "
                      "keys; dashed: points outside the grid (" + (", ".join(r["label"] for r in references[:1])
                                                                 or "none") + ").")
    baseline_text = "; ".join(f"{m}: {describe_values(points[m])}" for m in baselines)
    return {"name": name, "swept": keys, "levels": levels, "table": table, "image": image, "baselines": baseline_text,
            "seeds": sorted({r["provenance"].get("seed") for r in records}, key=lambda s: (s is None, s))}


def _run_groups(records: list[dict], index: RunIndex) -> tuple[dict[str, dict], list[str]]:
    """Runs behind records, keyed by the run path they name: found folder, methods, seeds, records."""
    runs: dict[str, dict] = {}
    no_run: list[str] = []
    for record in records:
        named = (record.get("provenance") or {}).get("run")
        if not named:
            if record["method"] not in no_run:
                no_run.append(record["method"])
            continue
        entry = runs.setdefault(named, {"named": named, "folder": index.find(record), "methods": [],
                                        "seed": record["provenance"].get("seed"), "records": []})
        if record["method"] not in entry["methods"]:
            entry["methods"].append(record["method"])
        entry["records"].append(record)
    return runs, no_run


def curves(title: str, records: list[dict], index: RunIndex, out: Path, name: str, by_config: bool = False) -> Curves:
    """Learning-curve figures of the runs behind `records`; runs not on this machine are listed, not drawn.

    Labels: the records' method names (and seeds where a method has several), or with `by_config` the
    config keys in which the runs differ (ablations: the swept keys and values).
    """
    runs, no_run = _run_groups(records, index)
    section = Curves(title, no_run=no_run)
    seeds_of: dict[str, set] = {}
    for entry in runs.values():
        for method in entry["methods"]:
            seeds_of.setdefault(method, set()).add(entry["seed"])
    for entry in runs.values():
        label = " / ".join(entry["methods"])
        if any(len(seeds_of[m]) > 1 for m in entry["methods"]) and entry["seed"] is not None:
            label += f" (seed {entry['seed']})"
        entry["label"] = label
        if entry["folder"] is None:
            section.missing.append({"label": label, "named": entry["named"]})
    method_order = list(dict.fromkeys(m for e in runs.values() for m in e["methods"]))
    ordered = sorted(runs.values(), key=lambda e: (method_order.index(e["methods"][0]), _seed_key(e["seed"])))
    section.missing.sort(key=lambda m: [e["label"] for e in ordered].index(m["label"]))
    found = [e for e in ordered if e["folder"] is not None]
    if by_config and found:
        labels = run_labels([read_config(e["folder"]) for e in found], [e["label"] for e in found])
        for entry, label in zip(found, labels):
            entry["label"] = label
    if len(found) <= RUNS_PER_FIGURE:
        batches = [("", found)] if found else []
    else:
        batches = []
        for method in dict.fromkeys(e["methods"][0] for e in found):
            batches.append((method, [e for e in found if e["methods"][0] == method]))
    for i, (method, batch) in enumerate(batches):
        suffix = f"-{i + 1}-{_slug(method)}" if method else ""
        path = plot_learning_curves([e["folder"] for e in batch], out / f"{name}{suffix}.png",
                                    [e["label"] for e in batch], method)
        section.images.append(Image(f"img/{path.name}", f"learning curves {method}".strip(),
                                    "Training loss (log scale, mean over each logging interval) and validation "
                                    "accuracy with its 95% CI band, against the training step."))
    return section


def write_configs(records: list[dict], out: Path) -> dict[str, str]:
    """configs/<digest>.json for every resolved config in the records; digest -> link relative to index.html."""
    links = {}
    for record in records:
        config = (record.get("provenance") or {}).get("config")
        if not config:
            continue
        digest = config_digest(config)
        if digest not in links:
            path = out / f"{digest}.json"
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            links[digest] = f"{out.name}/{path.name}"
    return links


def _short(text, n: int = 12) -> str:
    return "-" if not text else str(text)[:n]


def provenance(groups: list[tuple[str, list[dict], TableData]], links: dict[str, str], index: RunIndex) -> dict:
    """Per record (a table a group, in the table's row and column order): where it came from; per run
    found here: its status and wall time; the distinct environments."""
    out_groups = []
    environments: dict[str, dict] = {}
    run_rows: dict[str, dict] = {}
    for title, records, data in groups:
        methods = list(dict.fromkeys(data.cells.set_index("row").loc[data.rows, "method"]))
        pairs = sorted(zip(records, record_columns(records)), key=lambda pair: (
            methods.index(pair[0]["method"]) if pair[0]["method"] in methods else len(methods),
            data.columns.index(pair[1]) if pair[1] in data.columns else len(data.columns),
            _seed_key(pair[0]["provenance"].get("seed"))))
        rows = []
        for record, column in pairs:
            p = record.get("provenance") or {}
            config = p.get("config")
            digest = config_digest(config) if config else None
            env = p.get("environment") or {}
            environments.setdefault(json.dumps(env, sort_keys=True), {"environment": env, "count": 0})["count"] += 1
            folder = index.find(record) if p.get("run") else None
            rows.append({
                "method": record["method"], "column": column, "seed": "-" if p.get("seed") is None else p["seed"],
                "commit": p.get("commit") or "-", "commit_short": _short(p.get("commit"), 10),
                "digest": digest or "-", "config_link": links.get(digest) if digest else None,
                "store": p.get("store_checksum") or "-", "store_short": _short(p.get("store_checksum")),
                "episodes": p.get("episodes_checksum") or "-", "episodes_short": _short(p.get("episodes_checksum")),
                "episodes_seed": "-" if p.get("episodes_seed") is None else p["episodes_seed"],
                "n": record.get("n_episodes"), "eval_seconds": p.get("eval_seconds"), "time": p.get("time") or "-",
                "file": Path(record["_path"]).name if record.get("_path") else "-",
                "run": p.get("run") or "-", "run_here": str(folder) if folder else None,
                "checkpoint": record.get("checkpoint") or "-",
            })
            if folder is not None and str(folder) not in run_rows:
                run_rows[str(folder)] = _run_summary(folder, record["method"])
        out_groups.append({"title": title, "records": rows})
    return {"groups": out_groups, "runs": list(run_rows.values()), "environments": list(environments.values())}


def _seed_key(seed) -> tuple:
    return (seed is None, seed if isinstance(seed, (int, float)) else 0)


def _run_summary(folder: Path, method: str) -> dict:
    try:
        summary = json.loads((folder / "run.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        summary = {}
    best = summary.get("best") or {}
    return {"method": method, "folder": str(folder), "status": summary.get("status", "unknown (no run.json)"),
            "steps": summary.get("steps", "-"), "seconds": summary.get("train_seconds_this_session", "-"),
            "best_step": best.get("step", "-"),
            "best_val": "-" if best.get("val_acc") is None else f"{best['val_acc']:.2f}",
            "commit": _short(summary.get("commit"), 10), "time": summary.get("time", "-")}
