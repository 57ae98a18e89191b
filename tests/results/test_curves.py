import pytest
from PIL import Image

from fewshot.cli import main
from fewshot.errors import FewshotError
from fewshot.results.curves import plot_learning_curves, read_log


def _run(folder, rows):
    folder.mkdir()
    (folder / "log.csv").write_text("step,loss,train_acc,lr,val_acc,val_ci95,seconds\n" + "\n".join(rows) + "\n")
    return folder


def test_plot_learning_curves_writes_png_with_both_panels(tmp_path):
    a = _run(tmp_path / "a", ["50,1.5,0.4,0.001,,,1", "100,0.9,0.6,0.001,71.5,1.2,2", "150,0.5,0.8,0.001,80.0,1.0,3"])
    b = _run(tmp_path / "b", ["50,2.0,0.3,0.001,,,1", "100,1.1,0.5,0.001,60.0,1.5,2"])
    out = plot_learning_curves([a, b], tmp_path / "curve.png", ["one", "two"], "demo")
    with Image.open(out) as image:
        assert image.size == (1200, 456)
    log = read_log(a)
    assert log["val_acc"].dropna().tolist() == [71.5, 80.0]


def test_curve_cli_refuses_a_folder_without_log(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["curve", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no log.csv" in err
    with pytest.raises(FewshotError):
        read_log(tmp_path / "empty")


# --- what the figure says about itself (one test per new-user finding) ---

import json  # noqa: E402
import re  # noqa: E402

from matplotlib.colors import to_hex  # noqa: E402

from fewshot.config import load_config  # noqa: E402
from fewshot.results.curves import learning_curve_figure, run_labels  # noqa: E402


def _config_run(folder, rows, config_name="protonet", **overrides):
    run = _run(folder, rows)
    (run / "config.json").write_text(json.dumps(load_config(config_name, overrides)))
    return run


ROWS = ["50,0.9,0.4,0.001,,,1", "100,0.7,0.6,0.001,71.5,1.2,2", "150,0.55,0.8,0.001,80.0,1.0,3"]


def test_the_validation_axis_names_the_protocol(tmp_path):
    run = _config_run(tmp_path / "a", ROWS, **{"train.val_ways": 5, "train.val_shots": 1, "train.val_queries": 15,
                                                "train.val_episodes": 200})
    _, val_ax = learning_curve_figure([run]).axes
    assert val_ax.get_ylabel() == "validation accuracy (%)\n5-way 1-shot 15-query, 200 val episodes"


def test_runs_validated_differently_say_so_in_the_legend(tmp_path):
    a = _config_run(tmp_path / "a", ROWS, **{"train.val_shots": 1})
    b = _config_run(tmp_path / "b", ROWS, **{"train.val_shots": 5})
    _, val_ax = learning_curve_figure([a, b], ["A", "B"]).axes
    assert "protocols differ" in val_ax.get_ylabel()
    texts = [t.get_text() for t in val_ax.get_legend().get_texts()]
    assert texts == ["A [5-way 1-shot 15-query, 200 val episodes]", "B [5-way 5-shot 15-query, 200 val episodes]"]


def test_a_loss_panel_mixing_losses_says_so(tmp_path):
    a = _config_run(tmp_path / "a", ROWS, "protonet")
    b = _config_run(tmp_path / "b", ROWS, "siamese-triplet-cir")
    loss_ax, _ = learning_curve_figure([a, b], ["proto", "siamese"]).axes
    assert "different losses" in loss_ax.get_ylabel()
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["proto [prototypical]",
                                                                        "siamese [triplet]"]
    one, _ = learning_curve_figure([a]).axes
    assert one.get_ylabel() == "training loss, prototypical (log)"


def test_log_ticks_are_plain_numbers(tmp_path):
    run = _run(tmp_path / "a", ROWS)  # losses 0.55 .. 0.9: inside one decade, so only minor ticks are labelled
    figure = learning_curve_figure([run])
    figure.canvas.draw()
    loss_ax = figure.axes[0]
    labels = [t.get_text() for t in loss_ax.get_yticklabels(which="both") if t.get_text()]
    assert labels, "the loss axis has no tick labels at all"
    assert all(re.fullmatch(r"\d+(\.\d+)?", text) for text in labels), labels
    assert "0.6" in labels


def test_ablation_runs_are_labelled_by_swept_values_and_cir_off_by_name(tmp_path):
    names = ["siamese-triplet-cir-020c65905526", "siamese-triplet-cir-6b0b6e1a6646", "siamese-triplet-cir-a0fa4945aa"]
    a = _config_run(tmp_path / names[0], ROWS, "siamese-triplet-cir", **{"cir.p": 0.25, "cir.alpha": 0.1})
    b = _config_run(tmp_path / names[1], ROWS, "siamese-triplet-cir", **{"cir.enabled": False})
    c = _config_run(tmp_path / names[2], ROWS, "siamese-triplet-cir", **{"cir.p": 0.5, "cir.alpha": 0.5})
    figure = learning_curve_figure([a, b, c])
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert texts == ["cir.p=0.25, cir.alpha=0.1", "CIR off", "cir.p=0.5, cir.alpha=0.5"]
    # Only CIR on/off differs: the CIR run is named too, not left to its folder name.
    assert run_labels([{"cir": {"enabled": True}}, {"cir": {"enabled": False}}], ["x-1", "x-2"]) == ["CIR on", "CIR off"]
    # Nothing differs: folder names stay.
    assert run_labels([{"seed": 0}, {"seed": 0}], ["x-1", "x-2"]) == ["x-1", "x-2"]


def test_a_run_keeps_one_colour_in_both_panels(tmp_path):
    no_val = _run(tmp_path / "a", ["50,1.5,0.4,0.001,,,1", "100,0.9,0.6,0.001,,,2"])
    with_val = _run(tmp_path / "b", ROWS)
    loss_ax, val_ax = learning_curve_figure([no_val, with_val], ["a", "b"]).axes
    loss_colours = {line.get_label(): to_hex(line.get_color()) for line in loss_ax.get_lines()}
    val_colours = {line.get_label(): to_hex(line.get_color()) for line in val_ax.get_lines()}
    assert val_colours == {"b": loss_colours["b"]}
    assert loss_colours["a"] != loss_colours["b"]


def test_a_one_row_log_draws_a_marker(tmp_path):
    run = _run(tmp_path / "a", ["50,1.5,0.4,0.001,,,1"])
    line, = learning_curve_figure([run]).axes[0].get_lines()
    assert line.get_marker() == "o" and len(line.get_xdata()) == 1


def test_without_validation_no_validation_panel_is_drawn(tmp_path):
    run = _run(tmp_path / "a", ["50,1.5,0.4,0.001,,,1", "100,0.9,0.6,0.001,,,2"])
    figure = learning_curve_figure([run], title="demo")
    assert len(figure.axes) == 1
    assert figure.get_suptitle() == "demo (no validation)"
    out = plot_learning_curves([run], tmp_path / "one.png")
    with Image.open(out) as image:
        assert image.size == (672, 456)  # one panel, 5.6 x 3.8 inches at 120 dpi
