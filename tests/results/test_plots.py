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


def test_forest_distribution_and_by_factor_plots(tmp_path):
    from fewshot.results.plots import p_text, plot_by_factor, plot_distributions, plot_forest

    assert p_text(0.0) == "p<1e-300" and p_text(0.0312) == "p=0.031"
    rows = pd.DataFrame([{"label": "cir", "column": "5w1s", "diff": -1.0, "low": -1.5, "high": -0.5, "p": 0.001},
                         {"label": "pixels", "column": "5w1s", "diff": -60.0, "low": -61.0, "high": -59.0, "p": 0.0},
                         {"label": "cir", "column": "5w5s", "diff": 0.1, "low": -0.2, "high": 0.4, "p": 0.5}])
    # figsize (1.8 + 3.6 * 2 settings, max(2.4, 1.3 + 0.42 * 2 labels)) inches at 110 dpi
    assert png_size(plot_forest(rows, tmp_path / "forest.png", "protonet", "normal 95% CI")) == (990, 264)
    panels = {"5w1s": [("a", [50.0, 60.0, 70.0]), ("b", [80.0, 80.0, 80.0])], "5w5s": [("a", [90.0, 95.0, 100.0])]}
    assert png_size(plot_distributions(panels, tmp_path / "violins.png")) == (572, 418)  # (1.6 + 0.9*2*2) x 3.8
    points = pd.DataFrame([{"method": "m", "column": "10w1s", "value": v, "mean": 90.0 - v, "half": 1.0}
                           for v in (3, 5, 10)])
    assert png_size(plot_by_factor(points, "ways", tmp_path / "ways.png")) == (605, 374)  # (1.5 + 4) x 3.4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forest.png", "violins.png", "ways.png"]
