"""Ragged scoring (pad and mask) equals scoring each episode alone, and the fixed path on fixed episodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.episodes.metadataset import MetaDatasetSampler
from fewshot.episodes.ragged import RaggedEpisodes
from fewshot.episodes.sampler import EpisodeSampler
from fewshot.evaluate.episodes import score_episodes, score_ragged_episodes

RNG = np.random.default_rng(0)
COUNTS = RNG.integers(6, 40, size=30)
OFFSETS = np.concatenate([[0], np.cumsum(COUNTS)[:-1]])


def _alone(emb: torch.Tensor, episodes: RaggedEpisodes, distance: str) -> np.ndarray:
    """One episode at a time, written plainly: class means, then the nearest by distance or cosine."""
    table = F.normalize(emb, dim=-1) if distance == "cosine" else emb
    out = []
    for e in range(len(episodes)):
        classes, support, query = episodes.episode(e)
        protos = torch.stack([table[torch.from_numpy(OFFSETS[c] + s)].mean(0) for c, s in zip(classes, support)])
        correct = total = 0
        for j, (c, q) in enumerate(zip(classes, query)):
            x = table[torch.from_numpy(OFFSETS[c] + q)]
            scores = x @ F.normalize(protos, dim=-1).T if distance == "cosine" else -torch.cdist(x, protos)
            correct += int((scores.argmax(1) == j).sum())
            total += len(q)
        out.append(correct / total)
    return np.array(out)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_ragged_scoring_equals_each_episode_alone(distance, one_torch_thread):
    # Embeddings with class structure, so accuracies spread over (0, 1) rather than sit at chance.
    centres = RNG.standard_normal((len(COUNTS), 16)).astype(np.float32)
    emb = torch.from_numpy(np.repeat(centres, COUNTS, axis=0)
                           + 1.5 * RNG.standard_normal((COUNTS.sum(), 16)).astype(np.float32))
    episodes = MetaDatasetSampler(COUNTS, seed=1).sample(150)
    support, query = episodes.rows(OFFSETS)
    got = score_ragged_episodes(emb, support, query, episodes.ways, episodes.support_counts, episodes.query_counts,
                                distance)
    expected = _alone(emb, episodes, distance)
    assert 0.2 < expected.mean() < 0.95
    np.testing.assert_array_equal(got, expected)


def test_fixed_episodes_in_the_ragged_layout_score_as_the_fixed_path(one_torch_thread):
    emb = torch.from_numpy(RNG.standard_normal((COUNTS.sum(), 8)).astype(np.float32))
    batch = EpisodeSampler(COUNTS, 5, 2, 3, seed=0).sample(60)
    ragged = RaggedEpisodes.from_batch(batch)
    fixed = score_episodes(emb, *batch.rows(OFFSETS))
    r_support, r_query = ragged.rows(OFFSETS)
    np.testing.assert_array_equal(
        score_ragged_episodes(emb, r_support, r_query, ragged.ways, ragged.support_counts, ragged.query_counts),
        fixed)


def test_threads_do_not_change_the_result():
    emb = torch.from_numpy(RNG.standard_normal((COUNTS.sum(), 8)).astype(np.float32))
    episodes = MetaDatasetSampler(COUNTS, seed=2).sample(80)
    args = (emb, *episodes.rows(OFFSETS), episodes.ways, episodes.support_counts, episodes.query_counts)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = score_ragged_episodes(*args)
        torch.set_num_threads(2)
        two = score_ragged_episodes(*args)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_pixel_records_of_ragged_files_keep_ways_and_shots_and_table_by_them(tiny_store, tmp_path, capsys):
    from fewshot.cli import main
    from fewshot.data.store import Store
    from fewshot.episodes.files import load_episode_file
    from fewshot.evaluate.run import evaluate_pixels

    out = tmp_path / "md.npz"
    assert main(["episodes", "--data", str(tiny_store), "--protocol", "meta-dataset", "--count", "40",
                 "--out", str(out)]) == 0
    episodes = load_episode_file(out)
    (record,) = evaluate_pixels(tiny_store, [episodes], "cpu")
    assert record["setting"] == "meta-dataset-none" and record["ways"] is None and record["protocol"] == "meta-dataset"
    assert record["per_episode_ways"] == episodes.batch.ways.tolist()
    assert record["per_episode_shots"] == [round(float(x), 3) for x in episodes.batch.mean_shots()]
    # The record's accuracies are the ragged scores of the pixel embeddings.
    split = Store(tiny_store).split("test")
    pixels = torch.from_numpy(split.images.reshape(len(split), -1).astype(np.float32) / 255)
    expected = score_ragged_episodes(pixels, *episodes.batch.rows(split.class_offsets), episodes.batch.ways,
                                     episodes.batch.support_counts, episodes.batch.query_counts)
    np.testing.assert_allclose(record["per_episode_accuracy"], np.round(expected, 6))
    from fewshot.results.records import write_record

    write_record(record, tmp_path / "results")
    capsys.readouterr()
    assert main(["table", str(tmp_path / "results"), "--by", "ways", "--plot", str(tmp_path / "ways.png")]) == 0
    text = capsys.readouterr().out
    ways = np.asarray(record["per_episode_ways"])
    acc = np.asarray(record["per_episode_accuracy"]) * 100
    five = acc[ways == 5]
    assert f"{five.mean():.2f} +- {1.96 * five.std() / np.sqrt(len(five)):.2f} ({len(five)})" in text
    assert (tmp_path / "ways.png").stat().st_size > 1000
    assert main(["table", str(tmp_path / "results"), "--by", "shots"]) == 0
    assert "| pixels | meta-dataset-none |" in capsys.readouterr().out
