"""Result tables: rows are methods, columns episode settings, cells `mean +- ci95` (pandas underneath).

Rules, stated again in every table's caption:
- A column holds results measured on one episode set only (same episodes checksum), else FewshotError:
  that is what makes the paired tests below valid.
- One record a (method, column): mean +- the chosen 95% interval over its episodes (`ci` "normal":
  1.96*std/sqrt(n), ddof 0, the field's convention; "t": Student-t, ddof 1).
- Several records of one method that differ in `provenance.seed`: mean over the seeds +- a Student-t
  95% interval over the seed means (always t: a few seeds is a tiny sample). `per_seed=True` shows one
  row a seed instead.
- Bold: the best mean of each column, and every row whose paired difference from it is not significant
  (paired t-test on the same episodes, p >= 0.05); rows with several seeds are compared through their
  per-episode accuracy averaged over the seeds.
- `baseline`: an extra column per setting with the paired difference row - baseline, mean +- the same
  interval rule applied to the per-episode differences, `*` where p < 0.05 (paired t-test).
- The raw-pixel floor row (`pixels`) comes last.
- Records scored by different heads (fewshot/evaluate/heads): one row a (method, head), labelled `method + head`
  (`head_rows`; ablation tables, whose rows are grid points, turn it off).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fewshot.errors import FewshotError
from fewshot.stats import CI_DESCRIPTIONS, CI_RULES, format_interval, mean_interval, paired_difference, seed_interval
from fewshot.results.records import record_head

PIXEL_METHOD = "pixels"
SIGNIFICANCE = 0.05
FORMATS = ("md", "csv", "latex")


def _setting_key(setting: str) -> tuple[int, int, str]:
    """Order of columns: N-way K-shot settings by (N, K), then any protocol suffix; other names last."""
    match = re.fullmatch(r"(\d+)w(\d+)s(.*)", setting)
    if match is None:
        return 10**9, 0, setting
    return int(match[1]), int(match[2]), match[3]


def _column_key(column: str) -> tuple:
    *dataset, setting = column.split(" ")
    return (" ".join(dataset), *_setting_key(setting))


HEAD_JOIN = " + "


def _is_pixels(method: str) -> bool:
    return method.split(HEAD_JOIN)[0] == PIXEL_METHOD


def results_frame(records: list[dict], head_rows: bool = True) -> pd.DataFrame:
    """Long frame, one row a record: method, head, seed, setting, dataset, column, mean, ci95, n_episodes,
    episodes (checksum), accuracy (per-episode array), path. Refuses a column mixing episode sets.

    When the records were scored by more than one head (and `head_rows`), `method` is `method + head`."""
    if not records:
        raise FewshotError("no result records to table")
    datasets = {r["dataset"] for r in records}
    rows = []
    for r in records:
        column = r["setting"] if len(datasets) == 1 else f"{r['dataset']} {r['setting']}"
        rows.append({
            "method": r["method"], "head": record_head(r)["label"], "seed": r["provenance"].get("seed"),
            "setting": r["setting"],
            "dataset": r["dataset"], "split": r.get("split"), "column": column, "mean": r["mean"],
            "ci95": r["ci95"], "n_episodes": r["n_episodes"], "episodes": r["provenance"]["episodes_checksum"],
            "accuracy": np.asarray(r["per_episode_accuracy"], dtype=np.float64),
            "path": r.get("_path", f"record of {r['method']!r}"),
        })
    frame = pd.DataFrame(rows)
    if head_rows and frame["head"].nunique() > 1:
        frame["method"] = frame["method"] + HEAD_JOIN + frame["head"]
    mixed = frame.groupby("column")["episodes"].nunique()
    if (mixed > 1).any():
        bad = mixed[mixed > 1].index[0]
        raise FewshotError(f"column {bad} mixes results measured on different episode sets; "
                           "table only results evaluated on the same episode files")
    return frame


def _seed_text(seed) -> str:
    return "" if seed is None or (isinstance(seed, float) and np.isnan(seed)) else str(int(seed))


@dataclass
class TableData:
    """A summarised table: `cells` one row a (row label, column) with mean, half, seeds, marks."""

    cells: pd.DataFrame
    rows: list[str]
    columns: list[str]
    ci: str
    baseline: str | None
    per_seed: bool
    notes: dict = field(default_factory=dict)

    def caption(self) -> str:
        c = self.cells
        n = c.groupby("column")["n_episodes"].first()
        datasets = ", ".join(sorted(set(c["dataset"])))
        splits = ", ".join(sorted({str(s) for s in c["split"]}))
        if n.nunique() == 1:
            episodes = f"{int(n.iloc[0])} episodes a column"
        else:
            episodes = "episodes a column: " + ", ".join(f"{col} {int(n[col])}" for col in self.columns)
        text = (f"{datasets} {splits} accuracy (%): mean +- {CI_DESCRIPTIONS[self.ci]}, over {episodes}.")
        if (c["n_seeds"] > 1).any():
            text += (" Rows with several seeds: mean over seeds +- Student-t 95% CI over the seed means "
                     "(ddof 1).")
        text += (" Bold: best mean in the column and every row whose paired difference from it is not "
                 "significant (paired t-test on the same episodes, p >= 0.05).")
        if self.baseline:
            text += (f" Columns 'vs {self.baseline}': paired difference from {self.baseline} on the same "
                     f"episodes, mean +- the {self.ci} 95% CI of the differences; * p < 0.05 (paired t-test).")
        return text


def summarise(records: list[dict], ci: str = "normal", per_seed: bool = False, baseline: str | None = None,
              order: list[str] | None = None, head_rows: bool = True) -> TableData:
    """Aggregate records into table cells; mark best and tied cells; add paired differences vs `baseline`."""
    if ci not in CI_RULES:
        raise FewshotError(f"unknown interval rule {ci!r}; choose one of {', '.join(CI_RULES)}")
    frame = results_frame(records, head_rows)
    frame["seed_text"] = frame["seed"].map(_seed_text)
    frame["row"] = frame["method"]
    if per_seed:
        frame["row"] = [m if not s else f"{m} (seed {s})" for m, s in zip(frame["method"], frame["seed_text"])]
    duplicated = frame.duplicated(["row", "column", "seed_text"], keep=False)
    if duplicated.any():
        dup = frame[duplicated]
        first = dup.iloc[0]
        other = dup[(dup["row"] == first["row"]) & (dup["column"] == first["column"])].iloc[1]
        raise FewshotError(
            f"two results for method {first['method']!r} (seed {first['seed_text'] or 'none'}) in column "
            f"{first['column']}: {first['path']} and {other['path']}; give each run a distinct method name "
            "(config key name=...) or table them separately"
        )
    cells = []
    for (row, column), group in frame.groupby(["row", "column"], sort=False):
        accuracies = np.stack(group["accuracy"].to_list())
        if len(group) == 1:
            mean, half = mean_interval(accuracies[0], ci)
        else:
            mean, half = seed_interval(accuracies.mean(axis=1) * 100.0)
        first = group.iloc[0]
        cells.append({"row": row, "method": first["method"], "column": column, "dataset": first["dataset"],
                      "split": first["split"], "mean": mean, "half": half, "n_seeds": len(group),
                      "seeds": ",".join(sorted(group["seed_text"], key=lambda s: (len(s), s))),
                      "n_episodes": int(first["n_episodes"]), "accuracy": accuracies.mean(axis=0)})
    cells = pd.DataFrame(cells)
    _mark_best(cells)
    if baseline is not None:
        _baseline_differences(cells, frame, baseline, ci)
    columns = sorted(cells["column"].unique(), key=_column_key)
    methods = list(dict.fromkeys(frame["method"]))
    rank = {m: i for i, m in enumerate(order or [])}
    method_order = sorted(methods, key=lambda m: (_is_pixels(m), m not in rank, rank.get(m, 0), m))
    row_method = dict(zip(cells["row"], cells["method"]))
    row_seed = dict(zip(frame["row"], frame["seed_text"]))
    rows = sorted(row_method, key=lambda r: (method_order.index(row_method[r]), len(row_seed[r]), row_seed[r]))
    return TableData(cells, rows, columns, ci, baseline, per_seed)


def _mark_best(cells: pd.DataFrame) -> None:
    cells["best"] = False
    cells["tied"] = False
    for column, group in cells.groupby("column"):
        best = group["mean"].idxmax()
        cells.loc[best, "best"] = True
        for index in group.index.drop(best):
            p = paired_difference(cells.at[index, "accuracy"], cells.at[best, "accuracy"], wilcoxon=False).p_ttest
            cells.loc[index, "tied"] = bool(p >= SIGNIFICANCE)  # nan (one episode) is never a tie


def _baseline_differences(cells: pd.DataFrame, frame: pd.DataFrame, baseline: str, ci: str) -> None:
    if baseline not in set(frame["method"]):
        known = ", ".join(sorted(set(frame["method"])))
        raise FewshotError(f"--baseline {baseline!r} is not a method in these results; choose one of: {known}")
    base = frame[frame["method"] == baseline].groupby("column")["accuracy"].apply(
        lambda s: np.stack(s.to_list()).mean(axis=0))
    cells["diff"] = np.nan
    cells["diff_half"] = np.nan
    cells["diff_p"] = np.nan
    for index, cell in cells.iterrows():
        if cell["method"] == baseline or cell["column"] not in base.index:
            continue
        d = paired_difference(cell["accuracy"], base[cell["column"]], wilcoxon=False)
        cells.loc[index, ["diff", "diff_half", "diff_p"]] = [d.mean, d.half_width(ci), d.p_ttest]


def _row_labels(data: TableData) -> dict[str, str]:
    seeds = data.cells.groupby("row")["n_seeds"].max()
    return {row: row if seeds[row] == 1 else f"{row} ({seeds[row]} seeds)" for row in data.rows}


@dataclass(frozen=True)
class GridCell:
    """One table cell before formatting: `text` (numbers), `bold` (best or tied), `note` after the bold
    part (a differing seed count), `significant` (a baseline difference with p < 0.05)."""

    text: str
    bold: bool = False
    note: str = ""
    significant: bool = False


def table_grid(data: TableData, decimals: int = 2, pm: str = "+-") -> list[list[GridCell]]:
    """Rows of cells (row label first) in the table's order: what every renderer (md, latex, the HTML
    report) prints, so they cannot disagree on a number, a bold mark or a star."""
    index = data.cells.set_index(["row", "column"])
    seeds = data.cells.groupby("row")["n_seeds"].max()
    labels = _row_labels(data)
    lines = []
    for row in data.rows:
        line = [GridCell(labels[row])]
        for column in data.columns:
            if (row, column) not in index.index:
                line.append(GridCell("-"))
                if data.baseline:
                    line.append(GridCell("-"))
                continue
            cell = index.loc[(row, column)]
            note = f" ({cell['n_seeds']} seeds)" if cell["n_seeds"] != seeds[row] else ""
            line.append(GridCell(format_interval(cell["mean"], cell["half"], decimals, pm),
                                 bool(cell["best"] or cell["tied"]), note))
            if data.baseline:
                if np.isnan(cell["diff"]):
                    line.append(GridCell("-"))
                else:
                    line.append(GridCell(f"{cell['diff']:+.{decimals}f} {pm} {cell['diff_half']:.{decimals}f}",
                                         significant=bool(cell["diff_p"] < SIGNIFICANCE)))
        lines.append(line)
    return lines


def _grid(data: TableData, decimals: int, bold: tuple[str, str], pm: str, star: str = "*") -> list[list[str]]:
    """Rows of cell strings (label first); `bold` wraps best/tied cells, `pm` is the plus-minus sign,
    `star` marks a significant difference from the baseline."""
    return [[(f"{bold[0]}{c.text}{bold[1]}" if c.bold else c.text) + c.note + (star if c.significant else "")
             for c in line] for line in table_grid(data, decimals, pm)]


def table_header(data: TableData) -> list[str]:
    header = ["method"]
    for column in data.columns:
        header.append(column)
        if data.baseline:
            header.append(f"{column} vs {data.baseline}")
    return header


def render_markdown(data: TableData, decimals: int = 2) -> str:
    header = table_header(data)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _grid(data, decimals, ("**", "**"), "+-")]
    return "\n".join(lines) + f"\n\nTable: {data.caption()}\n"


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def render_latex(data: TableData, decimals: int = 2) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); the pixel floor is set off by a rule."""
    grid = _grid(data, decimals, ("\\textbf{", "}"), "$\\pm$", "$^{*}$")
    header = [latex_escape(h) for h in table_header(data)]
    caption = (latex_escape(data.caption()).replace("+-", "$\\pm$").replace(">=", "$\\geq$")
               .replace("<", "$<$"))
    lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}",
             "\\begin{tabular}{l" + "c" * (len(header) - 1) + "}", "\\toprule", " & ".join(header) + " \\\\",
             "\\midrule"]
    method = dict(zip(data.cells["row"], data.cells["method"]))
    for i, (row, cells) in enumerate(zip(data.rows, grid)):
        if i > 0 and _is_pixels(method[row]) and not _is_pixels(method[data.rows[i - 1]]):
            lines.append("\\midrule")
        numbers = ["--" if c == "-" else "$-$" + c[1:] if c.startswith("-") else c for c in cells[1:]]
        lines.append(" & ".join([latex_escape(cells[0]), *numbers]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(data: TableData, decimals: int = 2) -> str:
    """Numbers, not strings: per column `mean`, `ci95`, `bold` (best or tied) and the baseline difference."""
    index = data.cells.set_index(["row", "column"])
    labels = _row_labels(data)
    seeds = data.cells.groupby("row")["n_seeds"].max()
    out = []
    for row in data.rows:
        line: dict = {"method": labels[row], "seeds": int(seeds[row])}
        for column in data.columns:
            cell = index.loc[(row, column)] if (row, column) in index.index else None
            line[f"{column} mean"] = None if cell is None else round(float(cell["mean"]), decimals)
            line[f"{column} ci95"] = None if cell is None else round(float(cell["half"]), decimals)
            line[f"{column} bold"] = None if cell is None else int(bool(cell["best"] or cell["tied"]))
            if data.baseline:
                has = cell is not None and not np.isnan(cell["diff"])
                name = f"{column} vs {data.baseline}"
                line[name] = round(float(cell["diff"]), decimals) if has else None
                line[f"{name} ci95"] = round(float(cell["diff_half"]), decimals) if has else None
                line[f"{name} p"] = float(f"{cell['diff_p']:.4g}") if has else None
        out.append(line)
    frame = pd.DataFrame(out)
    for name in frame.columns:
        if name.endswith(" bold"):
            frame[name] = frame[name].astype("Int64")
    return frame.to_csv(index=False, lineterminator="\n")


def format_table(records: list[dict], fmt: str = "md", decimals: int = 2, baseline: str | None = None,
                 ci: str = "normal", per_seed: bool = False, order: list[str] | None = None,
                 head_rows: bool = True) -> str:
    if fmt not in FORMATS:
        raise FewshotError(f"unknown table format {fmt!r}; choose md, csv or latex")
    data = summarise(records, ci, per_seed, baseline, order, head_rows)
    return {"md": render_markdown, "csv": render_csv, "latex": render_latex}[fmt](data, decimals)
