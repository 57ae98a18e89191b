"""`fewshot embed` + `fewshot eval --embeddings` against `eval --run`, `--backbone pixels` and `--backbone
timm:MODEL` on the tiny store: the same records, episode for episode; and the refusals, one line, exit 2."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.cli import main
from fewshot.data.store import Store, sha256_file
from fewshot.embeddings import build_embedding_file, load_embedding_file
from fewshot.episodes.files import make_episode_file

# Fields a record from an embedding file shares with the record of the same embedding computed live.
SAME = ("method", "setting", "dataset", "split", "mean", "ci95", "n_episodes", "per_episode_accuracy", "distance")
SAME_PROVENANCE = ("episodes_checksum", "store_checksum", "run", "seed", "config")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def episode_files(tiny_store, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("episodes")
    split = Store(tiny_store).split("test")
    paths = []
    for shots in (1, 2):
        path = folder / f"3w{shots}s.npz"
        make_episode_file(split, 3, shots, 2, 60, seed=shots).save(path)
        paths.append(path)
    return paths


def records_of(folder: Path) -> dict[str, dict]:
    return {r["setting"]: r for r in (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))}


def assert_same_records(live: dict, cached: dict) -> None:
    assert live.keys() == cached.keys() and live
    for setting in live:
        a, b = live[setting], cached[setting]
        for key in SAME:
            assert a[key] == b[key], (setting, key)
        for key in SAME_PROVENANCE:
            assert a["provenance"][key] == b["provenance"][key], (setting, key)


def test_embed_then_eval_embeddings_equals_eval_run(tiny_store, tiny_train_overrides, episode_files, tmp_path,
                                                     capsys):
    from fewshot.config import load_config
    from fewshot.runs import load_run
    from fewshot.train.loop import train

    train(load_config("protonet", tiny_train_overrides), tiny_store, tmp_path / "run", progress=False,
          device_name="cpu")
    files = [str(p) for p in episode_files]
    assert main(["eval", "--run", str(tmp_path / "run"), "--episodes", *files, "--out", str(tmp_path / "live"),
                 "--device", "cpu"]) == 0
    assert main(["embed", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "run.npz"), "--device", "cpu"]) == 0
    assert "protonet synthetic test: 60 embeddings of dimension 64, 6 classes" in capsys.readouterr().out
    assert main(["eval", "--embeddings", str(tmp_path / "run.npz"), "--episodes", *files,
                 "--out", str(tmp_path / "cached"), "--device", "cpu"]) == 0
    live, cached = records_of(tmp_path / "live"), records_of(tmp_path / "cached")
    assert_same_records(live, cached)
    for setting in live:
        assert cached[setting]["checkpoint"] == live[setting]["checkpoint"] == "best"
        assert cached[setting]["checkpoint_step"] == live[setting]["checkpoint_step"]
        assert cached[setting]["embeddings"]["checksum"] == load_embedding_file(tmp_path / "run.npz").checksum
    assert 0 < np.std(live["3w1s"]["per_episode_accuracy"])  # episodes differ: the equality is not trivial

    # The rows are the run's embeddings of the named images.
    file = load_embedding_file(tmp_path / "run.npz")
    split = Store(tiny_store).split("test")
    learner, _, _ = load_run(tmp_path / "run")
    with torch.no_grad():
        expected = learner.embed(torch.from_numpy(np.array(split.images)).permute(0, 3, 1, 2).float() / 255)
    rows = split.class_offsets[file.labels] + file.ranks
    assert [file.meta["class_names"][i] for i in file.labels] == [split.class_names[i] for i in split.labels[rows]]
    assert np.allclose(file.embeddings, expected.numpy()[rows], atol=1e-5)
    assert file.meta["source"]["kind"] == "run" and file.meta["store_checksum"] == split.checksum


def test_pixels_and_a_timm_model_through_a_file_equal_their_live_evaluation(tiny_store, episode_files, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    files = [str(p) for p in episode_files]
    common = ["--data", str(tiny_store), "--device", "cpu"]
    assert main(["eval", "--backbone", "pixels", "--episodes", *files, "--out", str(tmp_path / "px-live"),
                 *common]) == 0
    assert main(["embed", "--backbone", "pixels", "--out", str(tmp_path / "px.npz"), *common]) == 0
    assert main(["eval", "--embeddings", str(tmp_path / "px.npz"), "--episodes", *files,
                 "--out", str(tmp_path / "px-cached"), "--device", "cpu"]) == 0
    assert_same_records(records_of(tmp_path / "px-live"), records_of(tmp_path / "px-cached"))
    pixels = load_embedding_file(tmp_path / "px.npz")
    assert pixels.embeddings.shape == (60, 784) and pixels.embeddings.max() <= 1.0

    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), tmp_path / "w.safetensors")
    model = ["--backbone", "timm:test_resnet", "--weights", str(tmp_path / "w.safetensors"), "--input-size", "32"]
    assert main(["eval", *model, "--episodes", *files, "--out", str(tmp_path / "timm-live"), *common]) == 0
    assert main(["embed", *model, "--out", str(tmp_path / "timm.npz"), *common]) == 0
    assert main(["eval", "--embeddings", str(tmp_path / "timm.npz"), "--episodes", *files,
                 "--out", str(tmp_path / "timm-cached"), "--device", "cpu"]) == 0
    live = records_of(tmp_path / "timm-live")
    assert_same_records(live, records_of(tmp_path / "timm-cached"))
    backbone = live["3w1s"]["provenance"]["config"]["backbone"]
    assert live["3w1s"]["method"] == "timm:test_resnet"
    assert backbone["weights_sha256"] == sha256_file(tmp_path / "w.safetensors")
    assert backbone["data_config"]["input_size"] == [3, 32, 32] and backbone["embedding_dim"] == 96


def test_bad_embedding_files_are_refused_with_one_line(tiny_store, episode_files, tmp_path, capsys):
    common = ["--data", str(tiny_store), "--device", "cpu"]
    assert main(["embed", "--backbone", "pixels", "--out", str(tmp_path / "px.npz"), *common]) == 0
    capsys.readouterr()
    episodes = str(episode_files[0])

    def refused(path) -> str:
        assert main(["eval", "--embeddings", str(path), "--episodes", episodes, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("fewshot: error: "), err
        return err

    good = load_embedding_file(tmp_path / "px.npz")
    # Wrong classes: a file without one of the classes the episodes use.
    keep = good.labels != 0
    fewer = build_embedding_file(good.embeddings[keep], good.labels[keep] - 1, good.ranks[keep], "synthetic", "test",
                                 good.meta["class_names"][1:], good.meta["class_counts"][1:], None, {})
    fewer.save(tmp_path / "fewer.npz")
    assert f"lacks 1 classes that episode file {episodes} uses (e.g. {good.meta['class_names'][0]!r})" in \
        refused(tmp_path / "fewer.npz")
    # Wrong counts: the same classes from a store with 9 images a class (the episodes' has 10).
    nine = good.ranks < 9
    build_embedding_file(good.embeddings[nine], good.labels[nine], good.ranks[nine], "synthetic", "test",
                         good.meta["class_names"], [9] * 6, None, {}).save(tmp_path / "nine.npz")
    assert (f"says class {good.meta['class_names'][0]!r} has 9 images but episode file {episodes} expects 10; "
            "they were made from different stores") in refused(tmp_path / "nine.npz")
    # Edited bytes: one embedding changed, the checksum kept.
    with np.load(tmp_path / "px.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["embeddings"][5, 5] = 0.5 if arrays["embeddings"][5, 5] != 0.5 else 0.25
    np.savez(tmp_path / "edited.npz", **arrays)
    assert "edited.npz fails its checksum" in refused(tmp_path / "edited.npz")
    # Not an embedding file: an episode file.
    assert "is not a fewshot embedding file" in refused(episodes)
    # Another split's episodes.
    make_episode_file(Store(tiny_store).split("val"), 3, 1, 2, 5, seed=0).save(tmp_path / "val.npz")
    assert main(["eval", "--embeddings", str(tmp_path / "px.npz"), "--episodes", str(tmp_path / "val.npz")]) == 2
    assert "is for split 'test' but episode file" in capsys.readouterr().err


def test_embed_and_eval_refuse_bad_arguments_and_never_overwrite(tiny_store, episode_files, tmp_path, capsys):
    out = tmp_path / "px.npz"
    out.write_bytes(b"mine")
    common = ["--data", str(tiny_store), "--device", "cpu"]
    cases = [
        (["embed", "--backbone", "pixels", "--out", str(out), *common], "already exists; choose another --out or pass"),
        (["embed", "--backbone", "pixels", "--out", str(tmp_path / "x.npy"), *common], "must end in .npz"),
        (["embed", "--out", str(tmp_path / "y.npz"), *common], "give exactly one of --run RUN_DIR or --backbone"),
        (["embed", "--backbone", "timm", "--out", str(tmp_path / "y.npz"), *common], "is not pixels or timm:MODEL"),
        (["embed", "--backbone", "pixels", "--weights", "w.pt", "--out", str(tmp_path / "y.npz"), *common],
         "--weights, --pretrained and --input-size are for --backbone timm:MODEL"),
        (["eval", "--embeddings", str(out), "--run", "r", "--episodes", str(episode_files[0])], "exactly one of"),
        (["eval", "--embeddings", str(out), "--episodes", str(episode_files[0]), *common], "needs no --data"),
        (["eval", "--backbone", "timm:test_resnet", "--episodes", str(episode_files[0])], "needs --data"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert out.read_bytes() == b"mine"
    assert main(["embed", "--backbone", "pixels", "--out", str(out), "--force", *common]) == 0
    assert load_embedding_file(out).meta["source"]["kind"] == "pixels"
    if importlib.util.find_spec("timm"):  # random weights are allowed (a floor), and said
        assert main(["embed", "--backbone", "timm:test_resnet", "--input-size", "16", "--out",
                     str(tmp_path / "random.npz"), *common]) == 0
        assert capsys.readouterr().err == ("fewshot: note: timm:test_resnet has random weights (pass --weights FILE "
                                           "or --pretrained for trained ones)\n")
