"""The ablation plot: a PNG with one panel per (setting, swept key), written atomically."""
from __future__ import annotations

import struct

import pandas as pd
import pytest

from fewshot.results.plots import plot_sweep


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def sweep_frame() -> pd.DataFrame:
    rows = []
    for column, offset in (("5w1s", 0.0), ("5w5s", 10.0)):
        for lr in (0.0001, 0.001, 0.01):
            for loss in ("triplet", "center"):
                rows.append({"optim.lr": lr, "loss.name": loss, "column": column,
                             "mean": 60 + offset + (5 if loss == "center" else 0), "half": 1.5})
    return pd.DataFrame(rows)


def test_one_panel_per_setting_and_key(tmp_path):
    out = plot_sweep(sweep_frame(), ["optim.lr", "loss.name"], tmp_path / "plots" / "sweep.png", title="t")
    assert out == tmp_path / "plots" / "sweep.png"
    # figsize (4.2 * 2 keys, 3.2 * 2 settings) inches at 110 dpi
    assert png_size(out) == (924, 704)
    assert [p.name for p in out.parent.iterdir()] == ["sweep.png"]  # no temporary file left


def test_panels_with_references_and_levels(tmp_path):
    frame = sweep_frame()
    frame = frame[frame["loss.name"] == "triplet"].drop(columns="loss.name")
    references = pd.DataFrame([{"column": "5w1s", "label": "baseline", "mean": 55.0, "half": 2.0},
                               {"column": "5w5s", "label": "baseline", "mean": 65.0, "half": 2.0}])
    out = plot_sweep(frame, ["optim.lr"], tmp_path / "one.png", levels={"optim.lr": [0.01, 0.001, 0.0001]},
                     references=references)
    assert png_size(out) == (462, 704)


def test_a_value_missing_from_the_levels_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        plot_sweep(sweep_frame(), ["optim.lr", "loss.name"], tmp_path / "x.png", levels={"optim.lr": [0.1]})
