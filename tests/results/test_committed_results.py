"""The numbers results/omniglot/README.md quotes are the ones its committed records give."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fewshot.evaluate.compare import compare_records
from fewshot.results.records import load_record, load_records
from fewshot.results.tables import format_table

OMNIGLOT = Path(__file__).resolve().parents[2] / "results" / "omniglot"


def _one(folder: Path, pattern: str) -> dict:
    (path,) = folder.glob(pattern)
    return load_record(path)


def _readme() -> str:
    return " ".join((OMNIGLOT / "README.md").read_text().split())  # lines joined: claims wrap


@pytest.mark.parametrize("setting, claim", [("5w1s", "5w1s -0.03 +- 0.11"), ("20w1s", "+0.12 +- 0.09")])
def test_the_paired_differences_from_the_previous_run_are_the_records(setting, claim):
    now = _one(OMNIGLOT / "records", f"protonet-trainval__omniglot-{setting}__*.json")
    before = _one(OMNIGLOT / "previous-run" / "records", f"protonet-trainval__omniglot-{setting}__*.json")
    d = compare_records(now, before).difference
    assert f"{d.mean:+.2f} +- {d.ci95:.2f}" in claim
    assert claim in _readme()


def test_the_floor_row_is_the_table_of_the_floor_records():
    table = format_table([r for r in load_records([OMNIGLOT / "records"]) if r["method"] == "pixels"])
    cells = re.search(r"^\| pixels \| (.*) \|$", table, re.M).group(1)
    row = re.search(r"^\| raw pixels, nearest class mean \(floor[^|]*\| (.*) \|$",
                    (OMNIGLOT / "README.md").read_text(), re.M).group(1)
    assert row == cells.replace("**", "")  # alone in its table the floor is the best row, so bold
