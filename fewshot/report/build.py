"""`build_report`: one static HTML page (DIR/index.html, PNGs in DIR/img, configs in DIR/configs).

Readable offline from disk: no server, no JavaScript, every image a file beside the page. The page is
rendered by jinja2 with autoescaping on (record fields are user text), figures by matplotlib (Agg).
"""
from __future__ import annotations

import os
from pathlib import Path

from fewshot.atomic import _umask, atomic_directory, write_text_atomic
from fewshot.errors import FewshotError
from fewshot.stats import CI_DESCRIPTIONS, CI_RULES
from fewshot.provenance import now
from fewshot.report import sections
from fewshot.report.runs import RunIndex
from fewshot.results.records import load_record, load_records

GENERATOR = "fewshot report"
RESULTS_SUBFOLDER = "results"  # `fewshot ablate` keeps an ablation's records in OUT/results


def load_report_records(paths: list[str | os.PathLike]) -> list[dict]:
    """Records from files and folders; a folder also contributes its `results/` subfolder (an ablation's
    OUT folder holds table.md and ablation.png beside results/)."""
    records: list[dict] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = list(path.glob("*.json"))
            if found:
                records += load_records([path])
            if (path / RESULTS_SUBFOLDER).is_dir() and list((path / RESULTS_SUBFOLDER).glob("*.json")):
                records += load_records([path / RESULTS_SUBFOLDER])
        elif path.exists():
            records.append(load_record(path))
        else:
            raise FewshotError(f"result path {path} does not exist")
    if not records:
        raise FewshotError(f"no result records found in {', '.join(map(str, paths))}")
    return records


def _check_folder(out: Path) -> None:
    """`out` may be new, empty, or hold an earlier report (replaced whole); never someone else's folder."""
    if out.exists() and not out.is_dir():
        raise FewshotError(f"report folder {out} is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        index = out / "index.html"
        ours = index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:2000]
        if not ours:
            raise FewshotError(f"report folder {out} is not empty and holds no earlier report; choose another --out")


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("fewshot.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_report(records: list[dict], out: str | os.PathLike, runs: list[str | os.PathLike] | None = None,
                 baseline: str | None = None, ci: str = "normal", decimals: int = 2, title: str = "",
                 sources: list[str] | None = None) -> Path:
    """Write the report of `records` to `out`/index.html and return that path.

    `runs`: folders to look for the run folders behind the records (besides the paths records name).
    `baseline`: the method paired differences are taken from (forest plot, table columns).
    Records carrying an `ablation` key (from `fewshot ablate`) form one section per ablation.
    """
    if ci not in CI_RULES:
        raise FewshotError(f"unknown interval rule {ci!r}; choose one of {', '.join(CI_RULES)}")
    if not records:
        raise FewshotError("no result records to report")
    final = Path(out)
    _check_folder(final)
    try:
        with atomic_directory(final, replace=True) as out:  # a failed build leaves the earlier report as it was
            return final / _write(out, records, runs, baseline, ci, decimals, title, sources).name
    except OSError as exc:
        raise FewshotError(f"report folder {final} cannot be written ({exc.strerror}); choose another --out") from None


def _write(out: Path, records: list[dict], runs, baseline: str | None, ci: str, decimals: int, title: str,
           sources: list[str] | None) -> Path:
    os.chmod(out, 0o777 & ~_umask())  # mkdtemp made it private; a report is for sending around
    img = out / "img"
    img.mkdir()
    (out / "configs").mkdir()
    index = RunIndex(runs)
    main = [r for r in records if not r.get("ablation")]
    grouped: dict[str, list[dict]] = {}
    for record in records:
        if record.get("ablation"):
            grouped.setdefault(str(record["ablation"].get("spec", "ablation")), []).append(record)

    context: dict = {"title": title or "fewshot report", "generator": GENERATOR, "generated": now(),
                     "sources": sources or [], "ci_text": CI_DESCRIPTIONS[ci], "baseline": baseline,
                     "main": None, "ablations": [], "curves": [], "factors": []}
    if main:
        table = sections.results_table(main, ci, baseline, decimals)
        main_section = {"table": table, "distributions": sections.distributions(table.data, img, "distributions"),
                        "forest": None, "comparisons": []}
        if baseline is not None:
            rows = sections.paired_differences(main, table.data, baseline, ci)
            main_section["comparisons"] = rows
            if rows:
                main_section["forest"] = sections.forest(rows, baseline, ci, img, "forest")
        context["main"] = main_section
        context["factors"] = sections.by_factor(main, table.data, ci, img, "accuracy")
        context["curves"].append(sections.curves("Runs behind the results table", main, index, img, "curves"))
    for i, (name, group) in enumerate(grouped.items()):
        section = sections.ablation(name, group, ci, decimals, img)
        section["curves"] = sections.curves(f"Runs of ablation {name}", group, index, img,
                                            f"curves-ablation-{i + 1}", by_config=True)
        context["ablations"].append(section)
    links = sections.write_configs(records, out / "configs")
    groups = [("the results table", main, context["main"]["table"].data)] if main else []
    groups += [(f"ablation {a['name']}", grouped[a["name"]], a["table"].data) for a in context["ablations"]]
    context["provenance"] = sections.provenance(groups, links, index)
    context["runs_searched"] = [str(r) for r in index.roots]
    html = _environment().get_template("index.html.j2").render(**context)
    target = out / "index.html"
    write_text_atomic(target, html)
    return target


def report_from_paths(results: list[str | os.PathLike], out: str | os.PathLike,
                      runs: list[str | os.PathLike] | None = None, baseline: str | None = None, ci: str = "normal",
                      decimals: int = 2, title: str = "") -> Path:
    return build_report(load_report_records(results), out, runs, baseline, ci, decimals, title,
                        sources=[str(r) for r in results])
