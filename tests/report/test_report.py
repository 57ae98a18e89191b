"""The HTML report: the same cells as `fewshot table`, the numbers of `fewshot compare`, every image a file,
runs found or named as missing, per-way accuracy only where records carry it, ablations, refusals."""
from __future__ import annotations

import html as html_module
import json
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fewshot.cli import main
from fewshot.config import config_digest
from fewshot.evaluate.compare import compare_records, format_comparison
from fewshot.report import build_report, load_report_records, report_from_paths
from fewshot.results.records import load_records
from fewshot.results.tables import format_table


class Page(HTMLParser):
    """Tables (by id: rows of (text, bold)), images, links and headings of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, bool]]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._table = None
        self._cell = None
        self._bold = False
        self._heading = None
        self._caption = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._bold = [], False
        elif tag == "strong" and self._cell is not None:
            self._bold = True
        elif tag == "caption":
            self._caption = True
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(("".join(self._cell).strip(), self._bold))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "caption":
            self._caption = False
        elif tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None and not self._caption:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def markdown_cells(text: str) -> list[list[tuple[str, bool]]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    out = []
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.append([(c.replace("**", "").replace("+-", "\u00b1"), c.startswith("**")) for c in cells])
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(report_inputs, tmp_path_factory) -> tuple[Path, Page, dict]:
    inputs = report_inputs
    out = tmp_path_factory.mktemp("report") / "site"
    index = report_from_paths([inputs["results"], inputs["elsewhere"], inputs["ablation"]], out,
                              runs=[inputs["runs"]], baseline="pixels")
    return index, Page(index.read_text()), inputs


def test_the_results_table_has_the_cells_bold_and_caption_of_fewshot_table(report):
    index, page, inputs = report
    records = load_records([inputs["results"], inputs["elsewhere"]])
    markdown = format_table(records, "md", baseline="pixels")
    expected = markdown_cells(markdown)
    html = [[(text.replace("*", "") if i else text, bold) for i, (text, bold) in enumerate(row)]
            for row in page.tables["results-table"]]
    # The stars of significant differences are <sup>*</sup> in HTML: compare them apart.
    assert [[t for t, _ in row] for row in html] == [[t.rstrip("*") for t, _ in row] for row in expected]
    assert [[b for _, b in row] for row in html[1:]] == [[b for _, b in row] for row in expected[1:]]
    stars = [[t.endswith("*") for t, _ in row] for row in expected[1:]]
    assert [[t.endswith("*") for t, _ in row] for row in page.tables["results-table"][1:]] == stars
    assert any(any(row) for row in stars), "the fixture should have at least one significant difference"
    caption = markdown.split("Table: ")[1].strip().replace("+-", "\u00b1")
    assert caption in html_module.unescape(index.read_text())
    assert "normal 95% CI: 1.96*std/sqrt(n), std ddof 0" in caption
    assert [row[0][0] for row in html[1:]] == ["far", "proto-a (2 seeds)", "proto-b", "pixels"]


def test_paired_differences_are_the_numbers_of_fewshot_compare(report):
    _, page, inputs = report
    records = load_records([inputs["results"]])
    b = next(r for r in records if r["method"] == "proto-b" and r["setting"] == "3w1s")
    base = next(r for r in records if r["method"] == "pixels" and r["setting"] == "3w1s")
    text = format_comparison(compare_records(b, base))
    row = next(r for r in page.tables["paired-table"] if r[0][0] == "proto-b" and r[1][0] == "3w1s")
    cells = [c for c, _ in row]
    assert f"A - B: {cells[5]} percent points" in text
    assert f"+- {cells[6].removeprefix(chr(177)).strip()}" in text.splitlines()[4]
    assert f"+- {cells[7].removeprefix(chr(177)).strip()}" in text.splitlines()[5]
    assert f"paired t-test p = {cells[8]}; Wilcoxon signed-rank p = {cells[9]}" in text
    labels = {(r[0][0], r[1][0]) for r in page.tables["paired-table"][1:]}
    assert labels == {(m, s) for m in ("proto-a (mean of 2 seeds)", "far", "proto-b") for s in ("3w1s", "3w2s")} - {
        ("far", "3w2s")}


def test_every_image_is_a_png_beside_the_page_and_configs_are_linked(report):
    index, page, inputs = report
    assert "<script" not in index.read_text()  # nothing needs JavaScript
    assert len(page.images) == len(set(page.images)) >= 5
    for src in page.images:
        assert not src.startswith(("/", "http", "data:")), src
        width, height = png_size(index.parent / src)
        assert width > 100 and height > 100
    configs = set(link for link in page.links if link.startswith("configs/"))
    records = load_records([inputs["results"], inputs["elsewhere"], inputs["ablation"] / "results"])
    by_link = {f"configs/{config_digest(r['provenance']['config'])}.json": r["provenance"]["config"] for r in records}
    assert configs == set(by_link)  # every record's resolved config, each linked
    for link in configs:
        assert json.loads((index.parent / link).read_text()) == by_link[link]


def test_provenance_lists_every_record_in_table_order(report):
    _, page, inputs = report
    main = page.tables["provenance-records-1"][1:]
    assert len(main) == len(load_records([inputs["results"], inputs["elsewhere"]]))
    assert [row[0][0] for row in main][:5] == ["far", "proto-a", "proto-a", "proto-a", "proto-a"]
    assert [(row[1][0], row[2][0]) for row in main[1:5]] == [("3w1s", "0"), ("3w1s", "1"), ("3w2s", "0"), ("3w2s", "1")]
    ablation = page.tables["provenance-records-2"][1:]
    assert [row[0][0] for row in ablation] == ["baseline", "optim.lr=0.001", "optim.lr=0.01"]
    assert all(row[13][0].endswith("not here)") or "(here: " in row[13][0] for row in main + ablation if row[13][0] != "-")


def test_learning_curves_of_found_runs_and_missing_runs_named(report):
    index, page, inputs = report
    text = index.read_text()
    assert "img/curves.png" in page.images
    assert "work-runs/omniglot-v3/far-away" in text and "1 run folder named by the records\nnot found here" in text
    assert "Without a training run: pixels." in text
    runs = page.tables["provenance-runs"]
    assert sorted(row[1][0] for row in runs[1:]) == sorted(str(p) for p in inputs["run_dirs"].values())
    assert all(row[2][0] == "finished" and row[3][0] == "4" for row in runs[1:])


def test_the_ablation_section_has_its_table_and_plot(report):
    _, page, _ = report
    assert "Ablation lr-sweep" in page.headings
    table = page.tables["ablation-table-1"]
    assert table[0] == [("method", False), ("3w1s", False), ("3w1s vs baseline", False)]
    assert [row[0][0] for row in table[1:]] == ["baseline", "optim.lr=0.001", "optim.lr=0.01"]
    assert "img/ablation-lr-sweep.png" in page.images
    assert "img/curves-ablation-1.png" in page.images


def test_accuracy_by_ways_only_where_records_carry_it(report, report_inputs, tmp_path):
    _, page, _ = report
    assert not any("by-ways" in src for src in page.images)
    index = report_from_paths([report_inputs["variable"]], tmp_path / "variable")
    images = Page(index.read_text()).images
    assert "img/accuracy-by-ways.png" in images and "img/accuracy-by-shots.png" not in images
    png_size(index.parent / "img/accuracy-by-ways.png")


def test_text_is_escaped(report_inputs, tmp_path):
    records = load_report_records([report_inputs["variable"]])
    records[0]["method"] = "<script>alert(1)</script>"
    text = build_report(records, tmp_path / "escaped").read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_command_writes_rewrites_and_refuses_another_folder(report_inputs, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["report", str(report_inputs["variable"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'index.html'}"
    assert main(["report", str(report_inputs["variable"]), "--out", str(out), "--ci", "t"]) == 0  # its own report
    assert "Student-t 95% CI" in (out / "index.html").read_text()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["report", str(report_inputs["variable"]), "--out", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not empty and holds no earlier report" in err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert main(["report", str(report_inputs["variable"]), "--out", str(tmp_path / "x"), "--baseline", "nope"]) == 2
    assert "--baseline 'nope' is not a method" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
