"""results/miniimagenet and results/tieredimagenet: the configs follow the published protocols, and each
reproduce.sh runs end to end on a tiny fixture in the exact public format (a few classes, a few images, two
steps a run), so the scripts cannot rot. Nothing is written under results/: the test points RESULTS elsewhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot.config import load_config
from fewshot.episodes.files import load_episode_file
from fewshot.episodes.protocols import make_episode_file_from_counts

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data" / "formats"))
from fixtures import (MINI_SPLITS, TIERED_SPLITS, make_mini_pickle_cache, make_tiered_ren,  # noqa: E402
                      synset)

PACKS = ("miniimagenet", "tieredimagenet")
PROTONET = {"1shot": (30, 1), "5shot": (20, 5)}  # Snell et al. 2017: training ways and shots
# Two steps a run, two classes an episode or batch: the plumbing of every config, not its accuracy.
TINY = ("episodes.ways=2 episodes.shots=1 episodes.queries=1 batch.classes=2 batch.per_class=2 train.steps=2 "
        "train.val_every=1 train.val_episodes=2 train.val_ways=2 train.val_shots=1 train.val_queries=1 "
        "train.checkpoint_every=1 train.log_every=1 backbone.hidden=8 train.channels_last=false")


def configs(pack: str) -> list[Path]:
    return sorted((ROOT / "results" / pack / "configs").glob("*.toml"))


@pytest.mark.parametrize("pack", PACKS)
def test_the_configs_resolve_to_the_published_protocols(pack):
    names = {path.stem for path in configs(pack)}
    for backbone in ("conv4", "resnet12"):
        for shots in PROTONET:
            assert f"protonet-{backbone}-{shots}" in names
        for family in ("siamese-triplet", "siamese-triplet-cir", "center", "center-cir"):
            assert f"{family}-{backbone}" in names
    for path in configs(pack):
        config = load_config(str(path))
        assert config["name"] == path.stem  # records and run folders are named by the file
        t, o = config["train"], config["optim"]
        assert (t["val_ways"], t["val_queries"], t["val_every"] > 0) == (5, 15, True)  # chosen on val
        if path.stem == "rfs-ce-resnet12":  # Tian et al. 2020: cross-entropy, then logistic regression (C = 1)
            assert (config["learner"], config["loss"]["name"], config["eval"]["head"], config["eval"]["head_C"]) == (
                "classifier", "cross_entropy", "logistic", 1.0)
            assert (o["name"], o["lr"], o["momentum"], o["weight_decay"]) == ("sgd", 0.05, 0.9, 5e-4)
            continue
        if path.stem.startswith("protonet-"):
            ways, shots = PROTONET[path.stem.rsplit("-", 1)[1]]
            e = config["episodes"]
            assert (config["learner"], e["ways"], e["shots"], e["queries"]) == ("prototypical", ways, shots, 15)
            assert (o["name"], o["lr"], o["step_size"], o["gamma"]) == ("adam", 1e-3, 2000, 0.5)
            assert t["val_shots"] == shots
        else:
            learner = "siamese" if path.stem.startswith("siamese") else "center"
            assert config["learner"] == learner
            assert config["cir"]["enabled"] == ("-cir-" in path.stem)
        assert config["backbone"]["name"] == ("resnet12" if "resnet12" in path.stem else "conv4")


def test_cir_pairs_differ_only_in_cir():
    for pack in PACKS:
        for family in ("siamese-triplet", "center"):
            for backbone in ("conv4", "resnet12"):
                folder = ROOT / "results" / pack / "configs"
                off = load_config(str(folder / f"{family}-{backbone}.toml"))
                on = load_config(str(folder / f"{family}-cir-{backbone}.toml"))
                assert {**on, "name": "", "cir": {**on["cir"], "enabled": False}} == {**off, "name": ""}


def _fixture(pack: str, src: Path, tmp: Path) -> list[Path]:
    """The public-format fixture in `src` and test episode files drawn from its class names and counts."""
    if pack == "miniimagenet":
        make_mini_pickle_cache(src)
        n_classes, per_class = MINI_SPLITS["test"]
        settings, at_least = [(1, 1), (2, 1)], False
    else:
        make_tiered_ren(src)
        n_classes, per_class = TIERED_SPLITS["test"]
        settings, at_least = [(1, 1)], True  # like the committed tieredImageNet files: counts as lower bounds
    names = [synset("test", c) for c in range(n_classes)]
    files = []
    for shots, queries in settings:
        made = make_episode_file_from_counts(pack, "test", names, [per_class] * n_classes, 2, shots, queries, 4, 0,
                                             counts_at_least=at_least)
        files.append(tmp / f"{pack}-test-2w{shots}s.npz")
        made.save(files[-1])
    return files


@pytest.mark.slow
@pytest.mark.parametrize("pack", PACKS)
def test_reproduce_sh_runs_end_to_end_on_a_fixture(pack, tmp_path):
    src, work, results = tmp_path / "src", tmp_path / "work", tmp_path / "results"
    episodes = _fixture(pack, src, tmp_path)
    env = {**os.environ, "WORK": str(work), "RESULTS": str(results), "DEVICE": "cpu", "JOBS": "2", "EXTRA": TINY,
           "EPISODES": " ".join(map(str, episodes)), "FEWSHOT": f"{sys.executable} -m fewshot",
           "OMP_NUM_THREADS": "1"}
    # Every learner, both backbones, CIR on and off, 1- and 5-shot ProtoNet: the script's every step for a subset of
    # its 13 configs (all of them take minutes on 2 cores; each config's protocol is checked above without training).
    names = (["center-cir-resnet12", "center-conv4", "protonet-conv4-1shot", "protonet-resnet12-5shot",
              "rfs-ce-resnet12", "siamese-triplet-cir-conv4", "siamese-triplet-resnet12"] if pack == "miniimagenet"
             else ["center-conv4", "protonet-conv4-1shot", "siamese-triplet-cir-resnet12"])
    env["ONLY"] = " ".join(names)
    script = ROOT / "results" / pack / "reproduce.sh"
    done = subprocess.run(["bash", str(script), str(src)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    records = [json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))]
    by_method: dict[str, set[str]] = {}
    for record in records:
        by_method.setdefault(record["method"], set()).add(record["setting"])
        assert record["n_episodes"] == 4 and len(record["per_episode_accuracy"]) == 4
        assert 0.0 <= record["mean"] <= 100.0
        assert record["dataset"] == pack
    settings = {load_episode_file(f).setting for f in episodes}
    assert by_method == {name: settings for name in [*names, "pixels"]}
    heads = {r["method"]: r["head"]["name"] for r in records}
    assert all(heads[name] == ("logistic" if name.startswith("rfs-") else "nearest_prototype") for name in names), heads
    for name in names:
        run = json.loads((work / name / "run.json").read_text())
        assert run["status"] == "finished" and run["steps"] == 2
        assert (results / "curves" / f"{name}.png").stat().st_size > 0
    table = (results / "table.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    # With several heads in one table a row is "method + head" (rfs-ce-resnet12 + logistic).
    assert all(any(row == name or row.startswith(f"{name} + ") for row in rows) for name in [*names, "pixels"]), rows
    assert f"configs={len(names)}" in (results / "wall_time.txt").read_text()

    # A second run (of two configs, to keep the test short) skips the finished runs and trains nothing again.
    again = subprocess.run(["bash", str(script), str(src)], capture_output=True, text=True, timeout=900,
                           env={**env, "RESULTS": str(tmp_path / "again"), "ONLY": f"{names[0]} {names[-1]}"})
    assert again.returncode == 0, again.stderr[-3000:]
    for name in (names[0], names[-1]):
        assert "finished earlier, kept" in (work / f"{name}.out").read_text()
    assert "configs=2" in (tmp_path / "again" / "wall_time.txt").read_text()


def test_reproduce_sh_refuses_a_missing_source(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "results" / "miniimagenet" / "reproduce.sh"), str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a folder" in done.stderr


def test_tiered_configs_are_the_miniimagenet_configs():
    mini = {path.stem: load_config(str(path)) for path in configs("miniimagenet")}
    tiered = {path.stem: load_config(str(path)) for path in configs("tieredimagenet")}
    assert mini == tiered  # same names, same resolved protocol: the two packs ask the same questions
