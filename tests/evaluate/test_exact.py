"""Exact integer scoring of the raw-pixel floor: hand-computed ties and near-ties, and a brute-force reference."""
from __future__ import annotations

import numpy as np
import pytest

from fewshot.data.store import Store, StoreWriter
from fewshot.episodes.files import EpisodeFile, build_episode_file, load_episode_file, make_episode_file
from fewshot.episodes.sampler import EpisodeBatch
from fewshot.evaluate.exact import score_episodes_exact
from fewshot.evaluate.run import EXACT_SCORING, evaluate_pixels


def test_an_exact_tie_goes_to_the_lowest_class_index():
    # 1-D, 2 shots. Class A supports 0 and 2 (mean 1), class B supports 3 and 3 (mean 3). A's query 2 is at
    # distance 1 from both means: a tie, which goes to the episode's first class. B's query 4 is right.
    features = np.array([[0], [2], [3], [3], [2], [4]], dtype=np.uint8)
    support = np.array([[[0, 1], [2, 3]]])
    query = np.array([[[4], [5]]])
    assert score_episodes_exact(features, support, query).tolist() == [1.0]  # A first: the tie is A, right
    # The same episode with B listed first: the tie goes to B, so A's query is wrong; B's query still right.
    assert score_episodes_exact(features, support[:, ::-1], query[:, ::-1]).tolist() == [0.5]


def _near_tie_pixels() -> tuple[np.ndarray, np.ndarray]:
    """b: 783 pixels at 255 and one at 0; a: b with that pixel at 1. From the all-zero image, b is nearer
    than a by exactly 1 (in squared pixel units): 783 * 255^2 against 783 * 255^2 + 1."""
    b = np.full(784, 255, dtype=np.uint8)
    b[0] = 0
    a = b.copy()
    a[0] = 1
    return a, b


def test_a_difference_of_one_squared_pixel_unit_is_resolved():
    a, b = _near_tie_pixels()
    # Rows: support a, support b, A's query a (distance 0 to a: right), B's query zeros (nearer b by 1: right).
    features = np.stack([a, b, a, np.zeros(784, np.uint8)])
    assert score_episodes_exact(features, np.array([[[0], [1]]]), np.array([[[2], [3]]])).tolist() == [1.0]


def test_float_features_are_refused():
    with pytest.raises(ValueError, match="integer features"):
        score_episodes_exact(np.zeros((2, 3), np.float32), np.array([[[0], [1]]]), np.array([[[0], [1]]]))


def test_evaluate_pixels_scores_near_ties_exactly(tmp_path):
    # A store whose test split holds the near tie: class "a" = [a, a], class "b" = [b, zeros]. Scored in float32
    # after dividing by 255, the two distances from the zero image (783.0000 and 783.0000154) are one float32
    # number, and the tie went to the first class: 0.5. Exactly, both queries are right.
    a, b = _near_tie_pixels()
    images = np.stack([a, a, b, np.zeros(784, np.uint8)]).reshape(4, 28, 28, 1)
    with StoreWriter(tmp_path / "store", "neartie", "test") as writer:
        writer.add_split("test", images, [0, 0, 1, 1], ["a", "b"])
    split = Store(tmp_path / "store").split("test")
    drawn = build_episode_file("neartie", "test", split.class_names, split.class_counts, 2, 1, 1, 1, 0,
                               split.checksum)
    episodes = EpisodeFile(drawn.meta, EpisodeBatch(np.array([[0, 1]]), np.array([[[0], [0]]]),
                                                    np.array([[[1], [1]]])))
    record = evaluate_pixels(tmp_path / "store", [episodes], "cpu")[0]
    assert record["per_episode_accuracy"] == [1.0]
    assert record["scoring"] == EXACT_SCORING


def _reference(images: np.ndarray, support: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Episode by episode, query by query, in int64: argmin_c ||K q - S_c||^2, first minimum on ties."""
    pixels = images.reshape(len(images), -1).astype(np.int64)
    out = []
    for s, q in zip(support, query):
        shots = s.shape[1]
        sums = pixels[s].sum(axis=1)  # (N, D)
        right = 0
        for label, rows in enumerate(q):
            for row in rows:
                distances = ((shots * pixels[row] - sums) ** 2).sum(axis=1)
                right += int(np.argmin(distances) == label)
        out.append(right / q.size)
    return np.array(out)


def test_evaluate_pixels_matches_a_brute_force_integer_reference(tiny_store, tmp_path):
    split = Store(tiny_store).split("test")
    make_episode_file(split, 5, 2, 3, 40, seed=3).save(tmp_path / "e.npz")
    episodes = load_episode_file(tmp_path / "e.npz")
    record = evaluate_pixels(tiny_store, [episodes], "cpu")[0]
    support, query = episodes.resolve(split).rows(split.class_offsets)
    expected = _reference(np.asarray(split.images), support, query)
    assert record["per_episode_accuracy"] == [round(float(x), 6) for x in expected]
