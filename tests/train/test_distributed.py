"""torch.distributed on CPU: two gloo processes against one process, on the tiny synthetic store.

Starting processes costs seconds on two cores, so one spawn of two ranks runs every two-rank phase
(`_two_rank_phases`) and the tests below check what each rank returned against single-process references
computed in the test process.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fewshot.train.loop as loop
from fewshot.cli import main as cli_main
from fewshot.config import load_config
from fewshot.data.store import Store
from fewshot.episodes.files import load_episode_file, make_episode_file
from fewshot.errors import FewshotError
from fewshot.evaluate import distributed as sharded
from fewshot.evaluate.embed import embed_rows
from fewshot.evaluate.episodes import score_episodes
from fewshot.evaluate.run import evaluate_run
from fewshot.losses.triplet import TripletMarginLoss
from fewshot.regularizers.cir import ClassInterference
from fewshot import distributed, launch
from fewshot.train import ddp
from fewshot.runs.checkpoint import load_checkpoint
from fewshot.runs import load_run
from fewshot.train.loop import train

# Plain SGD: Adam divides by the root of tiny second moments, so float noise in near-zero gradients (a conv
# bias before BatchNorm) would become visible steps; SGD keeps one-process and two-process runs together.
SGD = {"optim.name": "sgd", "optim.lr": 0.05, "train.episodes_per_step": 2}
CENTER = {"backbone.hidden": 8, "batch.classes": 4, "batch.per_class": 2, "loss.center_update": "ema",
          "train.steps": 3, "train.val_every": 0, "train.checkpoint_every": 3, "train.device": "cpu",
          "train.channels_last": False}
EMBED_BATCH, SCORE_BLOCK = 7, 3
# conftest's tiny ProtoNet run (a module-scoped fixture cannot take its function-scoped fixture).
TINY = {"backbone.hidden": 8, "episodes.ways": 4, "episodes.shots": 2, "episodes.queries": 2, "train.steps": 4,
        "train.val_every": 2, "train.val_episodes": 5, "train.val_ways": 3, "train.val_shots": 1,
        "train.val_queries": 2, "train.checkpoint_every": 2, "train.log_every": 1, "train.device": "cpu",
        "train.channels_last": False}


def _state(learner: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in learner.state_dict().items()}


def _train_and_keep_learner(config: dict, store, out, resume: bool = False) -> dict[str, np.ndarray]:
    """Run `train` and return the final state of the learner it built (every rank's own copy)."""
    made = []
    original = loop.create_learner

    def capture(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    loop.create_learner = capture
    try:
        train(config, store, out, resume=resume, progress=False, device_name="cpu")
    finally:
        loop.create_learner = original
    return _state(made[0])


def _fixed_embeddings() -> torch.Tensor:
    return torch.randn(60, 5, generator=torch.Generator().manual_seed(3))


# A global batch of 2 x 6 features: rank r holds row block r; class 1 appears on both ranks.
STAT_LABELS = torch.tensor([[0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 1, 1]])


def _stat_features() -> torch.Tensor:
    return torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(11))


def _batch_statistics(features: torch.Tensor, labels: torch.Tensor, global_batch: bool) -> dict:
    """CIR class means and a batch-hard triplet loss (mean over anchors) with its gradient, on one batch."""
    means, present = ClassInterference(5, 4, means="batch", global_batch=global_batch)._class_means(features, labels)
    x = features.clone().requires_grad_(True)
    loss = TripletMarginLoss(mining="batch_hard", triplet_reduction="mean", global_mining=global_batch)(x, labels)
    loss.backward()
    return {"cir_means": means.numpy(), "cir_present": present.numpy(), "triplet": loss.item(),
            "triplet_grad": x.grad.numpy()}


def _two_rank_phases(store: str, folder: str, overrides: dict) -> dict:
    """Runs in each of two spawned ranks; returns what the tests compare."""
    folder = Path(folder)
    with distributed.process_group(torch.device("cpu")):
        out: dict = {"rank": distributed.rank(), "world": distributed.world_size()}
        protonet = load_config("protonet", {**overrides, **SGD})
        out["trained"] = _train_and_keep_learner(protonet, store, folder / "two_ranks")
        out["resumed"] = _train_and_keep_learner(protonet, store, folder / "resume", resume=True)
        out["center"] = _train_and_keep_learner(load_config("center", CENTER), store, folder / "center")

        episodes = load_episode_file(folder / "episodes.npz")
        out["records"] = evaluate_run(folder / "reference", [episodes], store, "cpu")
        learner, _, _ = load_run(folder / "reference")
        split = Store(store).split("test")
        out["embedded"] = sharded.embed_rows(learner.embed, split.images, np.arange(len(split.images)),
                                             torch.device("cpu"), batch_size=EMBED_BATCH).numpy()
        support, query = episodes.batch.rows(split.class_offsets)
        out["scores"] = sharded.score_episodes(_fixed_embeddings(), support, query, "euclidean", SCORE_BLOCK)
        # The eval verb under torchrun: every rank runs it, rank 0 alone writes the record.
        out["eval_exit"] = cli_main(["eval", "--run", str(folder / "reference"), "--episodes",
                                     str(folder / "episodes.npz"), "--out", str(folder / "cli_records"),
                                     "--device", "cpu"])
        out["gathered"] = distributed.all_gather_cat(torch.full((2, 1), float(distributed.rank()))).numpy()
        out["reduced"] = distributed.all_reduce_mean(torch.tensor([float(distributed.rank())])).item()
        me = distributed.rank()
        out["statistics"] = _batch_statistics(_stat_features()[me], STAT_LABELS[me], global_batch=True)
        out["local_statistics"] = _batch_statistics(_stat_features()[me], STAT_LABELS[me], global_batch=False)
        try:
            loop.BatchSource(learner.batch_kind, Store(store).split("train"), {**protonet, "train": {
                **protonet["train"], "episodes_per_step": 3}}, 0)
        except FewshotError as exc:
            out["uneven"] = str(exc)
        try:
            ddp.wrap_for_training(learner, learner.loss, torch.device("cpu"), sync_batchnorm=True)
        except FewshotError as exc:
            out["sync_batchnorm"] = str(exc)
        return out


def _log_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def phases(tiny_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    config = load_config("protonet", {**TINY, **SGD})
    # One process, global batch of 2 episodes, 4 steps; keep its step-2 checkpoint to resume on two ranks.
    kept = {}
    original_save = loop.save_checkpoint

    def save_and_keep(path, state):
        original_save(path, state)
        if Path(path).name == "last.pt" and state["step"] == 2:
            kept["step2"] = Path(path).read_bytes()

    # One thread, like each of the two ranks: then the only difference left is the one under test (with
    # other thread counts, reductions sum in another order and results drift apart by float noise, ~1e-5).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(loop, "save_checkpoint", save_and_keep)
            reference = _train_and_keep_learner(config, tiny_store, folder / "reference")
    finally:
        torch.set_num_threads(threads)
    shutil.copytree(folder / "reference", folder / "resume")
    (folder / "resume" / "checkpoints" / "last.pt").write_bytes(kept["step2"])

    split = Store(tiny_store).split("test")
    make_episode_file(split, 3, 1, 2, 23, seed=5).save(folder / "episodes.npz")
    episodes = load_episode_file(folder / "episodes.npz")
    records = evaluate_run(folder / "reference", [episodes], tiny_store, "cpu")
    learner, _, _ = load_run(folder / "reference")
    embedded = embed_rows(learner.embed, split.images, np.arange(len(split.images)), torch.device("cpu"),
                          batch_size=EMBED_BATCH).numpy()
    support, query = episodes.batch.rows(split.class_offsets)
    scores = score_episodes(_fixed_embeddings(), support, query, "euclidean", SCORE_BLOCK)

    ranks = launch.run_local_workers(_two_rank_phases, 2, (str(tiny_store), str(folder), TINY))
    return {"folder": folder, "reference": reference, "records": records, "embedded": embedded, "scores": scores,
            "ranks": ranks}


def _assert_states_close(got: dict, want: dict, atol: float) -> None:
    for key, value in want.items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm running statistics: rank 0 keeps its own, which never enter a training step
        np.testing.assert_allclose(got[key], value, rtol=0, atol=atol, err_msg=key)


def test_helpers_are_single_process_identities_outside_a_group():
    x = torch.arange(6.0).reshape(3, 2)
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.all_reduce_mean(x) is x and distributed.all_reduce_sum(x) is x
    assert distributed.all_gather_cat(x) is x and distributed.all_gather_rows(x)[0] is x
    assert distributed.on_rank0(lambda a, b: a + b, 2, b=3) == 5
    assert distributed.per_rank_share(6, "train.episodes_per_step") == 6
    assert sharded.embed_rows(lambda t: t.flatten(1), np.zeros((4, 2, 2, 1), np.uint8), np.arange(4),
                              torch.device("cpu")).shape == (4, 4)


def test_two_ranks_join_one_gloo_group(phases):
    ranks = phases["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and [r["world"] for r in ranks] == [2, 2]
    for r in ranks:
        np.testing.assert_array_equal(r["gathered"].ravel(), [0.0, 0.0, 1.0, 1.0])
        assert r["reduced"] == 0.5


def test_two_ranks_with_one_episode_each_match_one_rank_with_two(phases):
    rank0, rank1 = phases["ranks"]
    # DDP keeps the ranks' parameters equal; both equal one process holding the whole global batch.
    _assert_states_close(rank1["trained"], rank0["trained"], atol=0.0)
    _assert_states_close(rank0["trained"], phases["reference"], atol=1e-6)
    one = load_checkpoint(phases["folder"] / "reference" / "checkpoints" / "last.pt")
    assert one["step"] == 4
    with open(phases["folder"] / "reference" / "log.csv", newline="") as a, \
            open(phases["folder"] / "two_ranks" / "log.csv", newline="") as b:
        losses_one = [float(r["loss"]) for r in csv.DictReader(a)]
        losses_two = [float(r["loss"]) for r in csv.DictReader(b)]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-6)


def test_rank0_alone_writes_the_run_folder(phases):
    run = phases["folder"] / "two_ranks"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "input.json", "log.csv", "run.json"]
    assert _log_steps(run) == [1, 2, 3, 4]  # one row a step: a second writer would have doubled them
    assert [r["eval_exit"] for r in phases["ranks"]] == [0, 0]
    assert len(list((phases["folder"] / "cli_records").iterdir())) == 1


def test_a_one_process_run_resumes_on_two_processes(phases):
    rank0, rank1 = phases["ranks"]
    _assert_states_close(rank0["resumed"], phases["reference"], atol=1e-6)
    _assert_states_close(rank1["resumed"], rank0["resumed"], atol=0.0)
    assert _log_steps(phases["folder"] / "resume") == [1, 2, 3, 4]
    assert load_checkpoint(phases["folder"] / "resume" / "checkpoints" / "last.pt")["step"] == 4


def test_center_bank_is_identical_on_both_ranks(phases):
    rank0, rank1 = phases["ranks"]
    bank = "center_loss.centers"
    assert np.abs(rank0["center"][bank]).sum() > 0  # the moving average did move the bank
    np.testing.assert_array_equal(rank0["center"][bank], rank1["center"][bank])


def _untimed(record: dict) -> dict:
    """A record without its wall-clock fields (when it ran and how long it took)."""
    provenance = {k: v for k, v in record["provenance"].items() if k not in ("eval_seconds", "time")}
    return {**record, "provenance": provenance}


def test_cir_means_and_triplet_mining_over_the_global_batch(phases):
    whole = _batch_statistics(_stat_features().reshape(12, 4), STAT_LABELS.reshape(12), global_batch=False)
    ranks = [r["statistics"] for r in phases["ranks"]]
    for r, got in enumerate(ranks):
        np.testing.assert_allclose(got["cir_means"], whole["cir_means"], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(got["cir_present"], [True] * 5)
        # Each rank's loss averages its 6 anchors; the one-process loss averages all 12. all_gather's backward
        # hands each rank the sum of all ranks' gradients for its rows; DDP's average then divides by 2.
        np.testing.assert_allclose(got["triplet_grad"] / 2, whole["triplet_grad"][6 * r:6 * r + 6], atol=1e-6)
    assert np.isclose((ranks[0]["triplet"] + ranks[1]["triplet"]) / 2, whole["triplet"], rtol=1e-6)
    # Switched off, each rank sees only its own classes: class 3 is no mean of rank 0's.
    local = phases["ranks"][0]["local_statistics"]
    np.testing.assert_array_equal(local["cir_present"], [True, True, True, False, False])
    assert not np.isclose(local["triplet"], ranks[0]["triplet"])


def test_sharded_evaluation_equals_single_process(phases):
    for ranked in phases["ranks"]:
        np.testing.assert_array_equal(ranked["scores"], phases["scores"])
        np.testing.assert_allclose(ranked["embedded"], phases["embedded"], rtol=1e-5, atol=1e-6)
        (got,), (want,) = ranked["records"], phases["records"]
        assert got["per_episode_accuracy"] == want["per_episode_accuracy"]
        assert _untimed(got) == _untimed(want)
    assert len(phases["scores"]) == 23 and 0.0 < phases["records"][0]["mean"] <= 100.0


def test_uneven_global_batch_is_refused(phases):
    for ranked in phases["ranks"]:
        assert ranked["uneven"].startswith("train.episodes_per_step=3 does not split evenly over 2 processes")


def test_nproc_flag_reports_a_worker_error_on_one_line(tiny_store, tmp_path, capsys):
    code = cli_main(["train", "--data", str(tiny_store), "--out", str(tmp_path / "run"), "--nproc", "2",
                     "--device", "cpu", "--no-progress", "backbone.hidden=8", "episodes.ways=4",
                     "train.episodes_per_step=3", "train.steps=1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "fewshot: error: train.episodes_per_step=3 does not split evenly over 2 processes; make it a multiple "
        "of 2 (the global batch must divide into equal shares)")
    assert not (tmp_path / "run").exists()


def test_sync_batchnorm_is_refused_on_cpu(phases):
    for ranked in phases["ranks"]:
        assert ranked["sync_batchnorm"].startswith("train.sync_batchnorm=true needs GPUs")
