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
