"""`fewshot demo`: the whole path on the embedded synthetic set, shortened to a few steps and episodes."""
from __future__ import annotations

import json

from fewshot.cli import main


def test_demo_runs_end_to_end_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "20", "--episodes", "50", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if line.startswith("| ")}
    assert "| method | 5w1s | 5w5s |" in printed
    assert "protonet" in rows and "pixels" in rows
    assert json.loads((out / "run" / "run.json").read_text())["steps"] == 20
    assert f"report: {out / 'report' / 'index.html'}" in printed
    page = (out / "report" / "index.html").read_text()
    assert "Paired differences from pixels" in page and 'src="img/curves.png"' in page
    records = sorted((out / "results").glob("*.json"))
    assert len(records) == 4  # protonet and pixels x 5w1s and 5w5s
    for path in records:
        record = json.loads(path.read_text())
        assert record["n_episodes"] == 50 and record["dataset"] == "synthetic"
        assert 20.0 <= record["mean"] <= 100.0  # 5-way: chance is 20%
    # A second run reuses the prepared store, episodes and finished run.
    assert main(["demo", "--steps", "20", "--episodes", "50", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    again = capsys.readouterr().out
    assert "preparing" not in again and "training" not in again
    assert "evaluating on 50 fixed test episodes" in again
