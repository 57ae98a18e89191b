"""Corrupt or edited inputs: every reader checks what it reads and refuses it in one line naming the file,
instead of using it silently (a wrong accuracy with exit 0) or ending in a traceback.

Checkpoints carry a digest of their state; episode files are checked against their own meta and against
the store; store, run-folder and record files are checked field by field; the restricted unpickler bounds
nesting; Omniglot archives bound each entry's size, refuse names outside the layout and name the entry
whose image does not decode.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import fewshot.data.omniglot as omniglot
from fewshot.data.store import Store
from fewshot.data.unpickle import MAX_DEPTH, load_pickle
from fewshot.episodes.files import _arrays_checksum, load_episode_file, make_episode_file
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.errors import FewshotError
from fewshot.runs.checkpoint import DIGEST_KEY, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import TINY_ARGS, error_of, ok  # noqa: E402



@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def eval_args(run: Path, episodes: Path) -> list:
    return ["eval", "--run", run, "--episodes", episodes, "--device", "cpu"]


# --- checkpoints ------------------------------------------------------------------------------------------


def flip_a_weight_byte(path: Path) -> None:
    """Flip one byte inside the largest tensor's data, in place in the zip (its CRC is not checked on load)."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_length, extra_length = (int.from_bytes(raw[info.header_offset + k:info.header_offset + k + 2], "little")
                                 for k in (26, 28))
    start = info.header_offset + 30 + name_length + extra_length
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_checkpoint_with_a_flipped_byte_is_refused_not_evaluated(run_copy, episodes_file, tiny_store, capsys):
    flip_a_weight_byte(run_copy / "checkpoints" / "best.pt")
    line = error_of(eval_args(run_copy, episodes_file), capsys)
    assert "best.pt fails its sha256 check" in line
    flip_a_weight_byte(run_copy / "checkpoints" / "last.pt")
    line = error_of(["train", "--data", tiny_store, "--out", run_copy, "--resume", "--no-progress", *TINY_ARGS],
                    capsys)
    assert "last.pt fails its sha256 check" in line


def test_a_checkpoint_edited_and_saved_again_with_its_old_digest_is_refused(run_copy, episodes_file, capsys):
    path = run_copy / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1e-3  # the kept digest no longer matches
    torch.save(state, path)
    assert "fails its sha256 check" in error_of(eval_args(run_copy, episodes_file), capsys)


def test_a_checkpoint_from_before_digests_still_loads(run_copy, episodes_file, capsys):
    path = run_copy / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    state.pop(DIGEST_KEY)
    torch.save(state, path)
    before = ok(eval_args(run_copy, episodes_file), capsys)
    assert load_checkpoint(path)["step"] == 4 and "+-" in before


# --- episode files ----------------------------------------------------------------------------------------


def rewrite(path: Path, out: Path, *, meta: dict | None = None, edit=None, fix_checksum: bool = True) -> Path:
    """An episode file edited as an adversary would: arrays and meta changed, the checksum recomputed."""
    with np.load(path) as data:
        arrays = {key: data[key].copy() for key in data.files}
    file_meta = json.loads(str(arrays["meta"]))
    if edit is not None:
        edit(arrays)
    file_meta.update(meta or {})
    if fix_checksum:
        batch = EpisodeBatch(arrays["classes"].astype(np.int64), arrays["support"].astype(np.int64),
                             arrays["query"].astype(np.int64))
        file_meta["checksum"] = _arrays_checksum(batch)
    arrays["meta"] = np.array(json.dumps(file_meta))
    np.savez(out, **arrays)
    return out


def set_value(name: str, index: tuple, value):
    def edit(arrays):
        arrays[name][index] = value
    return edit


@pytest.mark.parametrize("case, meta, edit, expected", [
    ("relabelled 20w5s", {"ways": 20, "shots": 5}, None, "its meta says ways = 20 but its arrays hold 3"),
    ("more queries claimed", {"queries": 15}, None, "its meta says queries = 15 but its arrays hold 2"),
    ("more episodes claimed", {"count": 1000}, None, "its meta says count = 1000 but its arrays hold 10"),
    ("rank past its class", None, set_value("support", (0, 1, 0), 10), "asks for image 10 of class"),
    ("negative rank", None, set_value("query", (3, 0, 1), -1), "asks for image -1 of class"),
    ("class out of range", None, set_value("classes", (2, 0), 6), "class index 6 is outside 0..5"),
    ("a class twice", None, lambda a: a["classes"].__setitem__((0, 1), a["classes"][0, 0]), "names a class twice"),
    ("query is a support image", None, lambda a: a["query"].__setitem__((0, 0, 0), a["support"][0, 0, 0]),
     "uses one image twice"),
    ("meta counts edited", {"class_counts": [10, 10, 10, 10, 10, "ten"]}, None, "do not pair up"),
    ("meta field removed", {"shots": None}, None, "meta field 'shots' should be int"),
])
def test_an_edited_episode_file_is_refused_before_use(case, meta, edit, expected, tiny_store, episodes_file,
                                                      tmp_path, capsys):
    edited = rewrite(episodes_file, tmp_path / "edited.npz", meta=meta, edit=edit)
    line = error_of(["eval", "--backbone", "pixels", "--data", tiny_store, "--device", "cpu", "--episodes", edited,
                     "--out", tmp_path / "results"], capsys)
    assert expected in line, (case, line)
    assert not (tmp_path / "results").exists()


def test_episodes_are_checked_against_the_store_not_only_their_own_meta(tiny_store, episodes_file, tmp_path):
    # The meta claims bigger classes (so the file's own check passes) and keeps the store's checksum.
    edited = rewrite(episodes_file, tmp_path / "edited.npz", meta={"class_counts": [40] * 6},
                     edit=set_value("support", (0, 0, 0), 30))
    episode_file = load_episode_file(edited)
    with pytest.raises(FewshotError, match="asks for image 30 of class 'glyph0[0-9]{2}', which has 10 images"):
        episode_file.resolve(Store(tiny_store).split("test"))


def test_a_file_drawn_by_the_sampler_passes_every_check(tiny_store, tmp_path):
    split = Store(tiny_store).split("test")
    path = tmp_path / "big.npz"
    make_episode_file(split, 6, 4, 6, 2000, seed=3).save(path)  # every class, every image used
    batch = load_episode_file(path).resolve(split)
    assert batch.classes.shape == (2000, 6) and batch.support.shape == (2000, 6, 4)


# --- store files ------------------------------------------------------------------------------------------


def write_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case, damage, expected", [
    ("empty images.npy", lambda s: (s / "train" / "images.npy").write_bytes(b""), "is damaged (No data left"),
    ("truncated images.npy", lambda s: (s / "train" / "images.npy").write_bytes(
        (s / "train" / "images.npy").read_bytes()[:500]), "is damaged (mmap length is greater than file size"),
    ("float images", lambda s: np.save(s / "train" / "images.npy", np.zeros((80, 28, 28, 1), np.float32)),
     "images.npy holds float32"),
    ("other image shape", lambda s: np.save(s / "train" / "images.npy", np.zeros((80, 14, 14, 1), np.uint8)),
     "images.npy holds uint8 (80, 14, 14, 1), not uint8 (N, 28, 28, 1)"),
    ("manifest key missing", lambda s: write_json(s / "train" / "manifest.json", lambda m: m.pop("n_classes")),
     "manifest.json: 'n_classes' should be a int"),
    ("manifest key of the wrong type", lambda s: write_json(s / "train" / "manifest.json",
                                                            lambda m: m.update(n_images="80")),
     "manifest.json: 'n_images' should be a int"),
    ("manifest not an object", lambda s: (s / "train" / "manifest.json").write_text("[1, 2]"),
     "does not match its manifest checksum"),
    ("manifest not JSON", lambda s: (s / "train" / "manifest.json").write_text("{"), "is damaged ("),
    ("store.json splits not a list", lambda s: write_json(s / "store.json", lambda m: m.update(splits="train")),
     "store.json is damaged"),
    ("store.json split outside the store", lambda s: write_json(s / "store.json", lambda m: m.update(splits=["../x"])),
     "store.json is damaged"),
])
def test_a_damaged_store_is_one_line(case, damage, expected, store_copy, tmp_path, capsys):
    damage(store_copy)
    line = error_of(["train", "--data", store_copy, "--out", tmp_path / "run", "--no-progress", *TINY_ARGS], capsys)
    assert expected in line, (case, line)
    assert not (tmp_path / "run").exists()


# --- run folders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case, name, text, expected", [
    ("config not JSON", "config.json", '{"name": ', "config.json is not readable JSON"),
    ("config a list", "config.json", "[]", "config.json holds a list, not a JSON object"),
    ("config without its learner", "config.json", None, "'learner' should be a str"),
    ("config with a bad value", "config.json", "lr", "optim.lr should be a float, found 'fast'"),
    ("config with an impossible value", "config.json", "dim", "head.dim must be 1 or more, got 0"),
    ("run.json truncated", "run.json", '{"status": "fin', "run.json is not readable JSON"),
    ("input.json without a class count", "input.json", '{"image_shape": [28, 28, 1]}', "'n_classes' should be a int"),
    ("input.json with a bad shape", "input.json", '{"image_shape": [28, -1], "n_classes": 8}', "do not describe"),
])
def test_a_damaged_run_folder_is_one_line(case, name, text, expected, run_copy, episodes_file, capsys):
    path = run_copy / name
    if text is None:
        write_json(path, lambda c: c.pop("learner"))
    elif text == "lr":
        write_json(path, lambda c: c["optim"].update(lr="fast"))
    elif text == "dim":
        write_json(path, lambda c: c["head"].update(dim=0))
    else:
        path.write_text(text)
    line = error_of(eval_args(run_copy, episodes_file), capsys)
    assert expected in line and str(run_copy) in line, (case, line)


def test_a_torn_log_row_is_dropped_and_an_edited_one_refused(run_copy, tiny_store, tmp_path, capsys):
    log = run_copy / "log.csv"
    log.write_text(log.read_text() + "5,0.8")  # a row cut short by a kill or a full disk: no newline
    ok(["curve", run_copy, "--out", tmp_path / "curve.png"], capsys)
    # Resuming (here a finished run: no step to take) rewrites the log without the torn row.
    ok(["train", "--data", tiny_store, "--out", run_copy, "--resume", "--no-progress", *TINY_ARGS], capsys)
    assert [line.split(",")[0] for line in log.read_text().splitlines()[1:]] == ["1", "2", "3", "4"]
    log.write_text(log.read_text() + "seven,abc,,,,,\n")
    line = error_of(["curve", run_copy, "--out", tmp_path / "curve.png"], capsys)
    assert "log.csv: line 6 is not a log row" in line


# --- result records given to table ------------------------------------------------------------------------


@pytest.mark.parametrize("case, change, expected", [
    ("accuracies missing", lambda r: r.pop("per_episode_accuracy"), "'per_episode_accuracy' is None"),
    ("mean a string", lambda r: r.update(mean="84.2"), "'mean' is '84.2'"),
    ("count disagrees", lambda r: r.update(n_episodes=999), "n_episodes is 999 but it lists 10"),
    ("an accuracy above 1", lambda r: r["per_episode_accuracy"].__setitem__(0, 7), "not a number in [0, 1]"),
    ("mean edited", lambda r: r.update(mean=r["mean"] + 5), "is not the mean of its per-episode accuracies"),
    ("provenance missing", lambda r: r.pop("provenance"), "'provenance' is None"),
    ("no episodes checksum", lambda r: r["provenance"].pop("episodes_checksum"), "provenance.episodes_checksum"),
])
def test_a_damaged_record_given_to_table_is_one_line_naming_it(case, change, expected, trained_run, episodes_file,
                                                               tmp_path, capsys):
    results = tmp_path / "results"
    ok(eval_args(trained_run, episodes_file) + ["--out", results], capsys)
    [path] = results.glob("*.json")
    write_json(path, change)
    line = error_of(["table", results], capsys)
    assert expected in line and str(path) in line, (case, line)


def test_bench_measures_again_a_point_whose_record_is_damaged(tiny_store, episodes_file, tmp_path, capsys):
    from fewshot.bench import index_records

    results = tmp_path / "results"
    args = ["bench", "protonet", "--data", tiny_store, "--episodes", episodes_file, "--seeds", "0", "--runs",
            tmp_path / "runs", "--results", results, "--device", "cpu", "--no-progress", *TINY_ARGS]
    ok(args, capsys)
    [path] = results.glob("*.json")
    write_json(path, lambda r: r.update(n_episodes=3))
    assert index_records(results) == {}
    assert "record exists" not in ok(args, capsys)
    assert len(index_records(results)) == 1


# --- pickles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth, kind", [(MAX_DEPTH + 5, "list"), (5000, "list"), (200_000, "list"),
                                         (MAX_DEPTH + 5, "dict"), (3000, "tuple")])
def test_a_deeply_nested_pickle_is_one_line(depth, kind, tmp_path):
    if kind == "dict":  # {"a": {"a": ...}}: EMPTY_DICT, then per level key and SETITEM after the inner dict
        body = b"}" + b"X\x01\x00\x00\x00a}" * depth + b"s" * depth
    elif kind == "tuple":  # MARK ... TUPLE, nested
        body = b"(" * depth + b")" + b"t" * depth
    else:
        body = b"]" * depth + b"a" * (depth - 1)
    path = tmp_path / f"deep-{kind}.pkl"
    path.write_bytes(b"\x80\x02" + body + b".")
    with pytest.raises(FewshotError, match=f"nest more than {MAX_DEPTH} levels deep"):
        load_pickle(path)


def test_a_shallow_pickle_still_loads(tmp_path):
    import pickle

    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"data": [[np.zeros((2, 2), np.uint8)]], "labels": [1, 2]}, protocol=2))
    assert load_pickle(path)["labels"] == [1, 2]


# --- Omniglot archives ------------------------------------------------------------------------------------


CHAR = "Angelic/character01"


def png(size=(105, 105)) -> bytes:
    image = Image.new("1", size, 1)
    ImageDraw.Draw(image).rectangle((10, 10, 40, 40), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def one_character(monkeypatch):
    """The Vinyals lists cut down to one character in every split (so a two-entry archive is complete)."""
    monkeypatch.setattr(omniglot, "vinyals_split", lambda split: [f"{CHAR}/rot000"])


def archive(folder: Path, extra: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "images_background.zip", "w") as zf:
        for d in (1, 2):
            zf.writestr(f"images_background/{CHAR}/0001_0{d}.png", png())
        for name, data in extra.items():
            zf.writestr(name, data)
    return folder


def prepare_args(src: Path, tmp_path: Path) -> list:
    return ["prepare", "omniglot", "--src", src, "--out", tmp_path / "store", "--workers", 1, "--no-progress"]


@pytest.mark.parametrize("entry, data, expected", [
    (f"images_background/../images_background/{CHAR}/0001_03.png", png(), "points outside the archive's folders"),
    (f"../images_background/{CHAR}/0001_03.png", png(), "points outside the archive's folders"),
    (f"/images_background/{CHAR}/0001_03.png", png(), "points outside the archive's folders"),
    (f"images_evaluation/{CHAR}/0001_03.png", png(), "belongs to images_evaluation, not images_background"),
    (f"images_background/{CHAR}/0001_03.png", b"\x89PNG\r\n\x1a\n not really", "not a readable PNG drawing"),
    (f"images_background/{CHAR}/0001_03.png", b"GIF89a", "not a readable PNG drawing"),
    (f"images_background/{CHAR}/0001_03.png", png((4000, 3000)), "a 4000x3000 image, not a 105x105"),
    (f"images_background/{CHAR}/0001_03.png", b"\0" * (omniglot.MAX_ENTRY_BYTES + 1), "bytes, not an Omniglot"),
])
def test_a_bad_omniglot_entry_is_one_line_naming_it(entry, data, expected, one_character, tmp_path, capsys):
    src = archive(tmp_path / "src", {entry: data})
    line = error_of(prepare_args(src, tmp_path), capsys)
    assert expected in line and entry.lstrip("/") in line, line
    assert not (tmp_path / "store").exists()


def test_an_entry_larger_than_its_header_says_is_read_only_up_to_the_bound(one_character, tmp_path, monkeypatch):
    monkeypatch.setattr(omniglot, "MAX_ENTRY_BYTES", 4096)
    src = archive(tmp_path / "src", {f"images_background/{CHAR}/0001_03.png": png()})
    drawings = omniglot._read_sources(src)
    assert sorted(number for number, _, _ in drawings[CHAR]) == [1, 2, 3]
    assert all(len(data) <= 4097 for _, data, _ in drawings[CHAR])


def test_a_clean_small_archive_still_prepares(one_character, tmp_path, capsys):
    src = archive(tmp_path / "src", {"images_background/README.txt": b"not a drawing: skipped"})
    ok(prepare_args(src, tmp_path), capsys)
    assert Store(tmp_path / "store").split("train").class_counts.tolist() == [2]


def test_a_config_json_lacking_keys_of_a_newer_version_still_evaluates(run_copy, episodes_file, trained_run, capsys):
    reference = ok(eval_args(trained_run, episodes_file), capsys).split("+-")[0]

    def older(config):
        del config["train"]["channels_last"], config["eval"]["batch_episodes"], config["head"]["normalize"]
    write_json(run_copy / "config.json", older)
    assert ok(eval_args(run_copy, episodes_file), capsys).split("+-")[0] == reference  # same accuracy
