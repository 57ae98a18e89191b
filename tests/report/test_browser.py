"""The report in a real browser (headless Chromium): every table cell and image there, images decoded,
no console errors; a screenshot is kept as a test artefact in test-artefacts/ (git-ignored; its path printed).

Chromium is Debian's `chromium` package: `make test` installs it with apt where it is missing and apt is
usable; elsewhere this test skips, saying so.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fewshot.report import report_from_paths
from fewshot.results.records import load_records
from fewshot.results.tables import format_table

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"

# Written into a copy of the page, never into the report (which needs no JavaScript): registered in <head>
# so it sees every image's load or error, it writes what the browser saw into the DOM once all has loaded.
CHECK_SCRIPT = """<script>
var seen = [];
window.addEventListener('error', function (e) {
  seen.push(e.target && e.target.src ? 'failed to load ' + e.target.src : 'error: ' + e.message);
}, true);
['error', 'warn'].forEach(function (level) {
  var original = console[level];
  console[level] = function () { seen.push(level + ': ' + Array.from(arguments).join(' ')); original.apply(console, arguments); };
});
window.addEventListener('load', function () {
  var out = {errors: seen, height: document.documentElement.scrollHeight, images: [], tables: []};
  document.querySelectorAll('img').forEach(function (img) {
    out.images.push({src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth});
  });
  document.querySelectorAll('table').forEach(function (table) {
    out.tables.push({id: table.id, rows: Array.from(table.rows).map(function (row) {
      return Array.from(row.cells).map(function (cell) { return cell.textContent.trim(); }); })});
  });
  var pre = document.createElement('pre');
  pre.id = 'browser-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for candidate in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(candidate)
        if path:
            return path
    pytest.skip("headless Chromium not found (Debian: apt-get install chromium; `make test` does it where apt "
                "is usable): skipping the browser check of the report")


def run_browser(browser: str, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
               "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def markdown_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[c.strip().replace("**", "").replace("+-", "\u00b1") for c in line.strip("|").split("|")]
            for line in rows]


def test_the_report_renders_in_chromium(report_inputs, tmp_path):
    browser = chromium()
    inputs = report_inputs
    sources = [inputs["results"], inputs["elsewhere"], inputs["ablation"], inputs["variable"]]
    index = report_from_paths(sources, tmp_path / "site", runs=[inputs["runs"]], baseline="pixels")
    page = index.read_text()
    check = index.with_name("_browser_check.html")
    check.write_text(page.replace("<head>", "<head>\n" + CHECK_SCRIPT, 1))

    done = run_browser(browser, "--virtual-time-budget=15000", "--dump-dom", check.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page never finished loading in Chromium:\n{done.stderr[-2000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["errors"] == []
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    # Every image: there, decoded (naturalWidth > 0), and every PNG written is shown.
    assert seen["images"], "no image in the report"
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0, image
    assert sorted(i["src"] for i in seen["images"]) == sorted(f"img/{p.name}" for p in (index.parent / "img").iterdir())

    # Every table cell: the results and ablation tables hold exactly `fewshot table`'s cells.
    tables = {t["id"]: t["rows"] for t in seen["tables"]}
    main = load_records([inputs["results"], inputs["elsewhere"], inputs["variable"]])
    assert tables["results-table"] == markdown_rows(format_table(main, "md", baseline="pixels"))
    ablation = load_records([inputs["ablation"] / "results"])
    order = ["baseline", "optim.lr=0.001", "optim.lr=0.01"]
    assert tables["ablation-table-1"] == markdown_rows(format_table(ablation, "md", baseline="baseline", order=order))
    for table_id, rows in tables.items():  # and no table has a missing or empty cell
        assert all(len(row) == len(rows[0]) for row in rows), table_id
        assert all(cell for row in rows for cell in row), table_id
    assert {"paired-table", "provenance-records-1", "provenance-records-2", "provenance-runs",
            "provenance-environments"} <= set(tables)
    n_records = len(main) + len(ablation)
    assert sum(len(tables[f"provenance-records-{i}"]) - 1 for i in (1, 2)) == n_records

    # The screenshot: the whole page, of the report itself (no check script), kept for a person to look at.
    shot = tmp_path / "report-screenshot.png"
    height = min(int(seen["height"]) + 40, 16000)
    taken = run_browser(browser, f"--window-size=1280,{height}", f"--screenshot={shot}", index.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    kept = ARTEFACTS / "report-screenshot.png"  # pytest's tmp folders rotate; this one stays (git ignores it)
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, kept)
    print(f"screenshot of the report: {kept}")
