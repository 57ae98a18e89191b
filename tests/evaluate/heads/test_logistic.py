"""The batched logistic-regression head: a problem solved by hand, and scikit-learn's LogisticRegression
(the RFS evaluation: L2-normalised features, C = 1, lbfgs, multinomial) on 200 episodes of real embeddings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import brentq

from fewshot.evaluate.heads import create_head
from fewshot.evaluate.heads.logistic import fit_logistic, logistic_predictions

from .conftest import embedded, random_conv4

sklearn = pytest.importorskip("sklearn.linear_model")


def test_two_points_solved_by_hand():
    # Class 0 at x = +1, class 1 at x = -1 (1-D). By symmetry b = 0 and W = (w, -w); the objective
    # 2 log(1 + exp(-2w)) + w^2 has its minimum where w = 2 sigmoid(-2w).
    w_star = brentq(lambda w: w - 2.0 / (1.0 + np.exp(2.0 * w)), 0.0, 2.0)
    z = torch.tensor([[[1.0], [-1.0]]], dtype=torch.float64)
    weights, intercepts = fit_logistic(z, torch.tensor([0, 1]), 2, C=1.0, tol=1e-12)
    assert weights[0, 0].tolist() == pytest.approx([w_star, -w_star], abs=1e-9)
    assert intercepts[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    # C scales the penalty: C = 10 -> 2 log(1 + exp(-2w)) + w^2 / 10, minimum at w = 20 sigmoid(-2w).
    w_ten = brentq(lambda w: w - 20.0 / (1.0 + np.exp(2.0 * w)), 0.0, 20.0)
    weights, _ = fit_logistic(z, torch.tensor([0, 1]), 2, C=10.0, tol=1e-12)
    assert weights[0, 0, 0].item() == pytest.approx(w_ten, abs=1e-8)


def test_queries_by_hand_after_l2_normalisation():
    # 2-D: class 0 around (1, 0), class 1 around (0, 1); L2N makes every point a direction.
    cache = torch.tensor([[2.0, 0.1], [0.1, 3.0], [5.0, 1.0], [1.0, 4.0], [0.2, 0.1]])
    head = create_head("logistic")
    # (5, 1) points to class 0, (1, 4) to class 1, (0.2, 0.1) (short, but L2N ignores length) to class 0.
    assert head.score(cache, np.array([[[0], [1]]]), np.array([[[2, 4], [3, 3]]])).tolist() == [1.0]


def _sklearn_predictions(ep, C: float = 1.0, tol: float = 1e-4) -> np.ndarray:
    """The RFS loop: per episode, L2-normalise, fit scikit-learn's LogisticRegression, predict the queries
    (tol 1e-4 is scikit-learn's default, which RFS keeps, as it keeps float32 features; a tighter tol is run
    on float64 features, as float32 cannot reach it)."""
    features = F.normalize(ep.cache, dim=-1).numpy()
    if tol < 1e-4:
        features = features.astype(np.float64)
    n_episodes, ways, shots = ep.support.shape
    labels = np.repeat(np.arange(ways), shots)
    out = []
    for e in range(n_episodes):
        clf = sklearn.LogisticRegression(C=C, solver="lbfgs", max_iter=1000, random_state=0, tol=tol)
        clf.fit(features[ep.support[e].ravel()], labels)
        out.append(clf.predict(features[ep.query[e].ravel()]))
    return np.stack(out)


def _agree_with_sklearn(ep, C: float = 1.0, tol: float = 1e-4) -> tuple[float, float, float]:
    ours = logistic_predictions(F.normalize(ep.cache, dim=-1), ep.support, ep.query, C).numpy()
    theirs = _sklearn_predictions(ep, C, tol)
    targets = np.repeat(np.arange(ep.query.shape[1]), ep.query.shape[2])
    head_accuracy = create_head("logistic", C=C).score(ep.cache, ep.support, ep.query)
    assert np.allclose(head_accuracy, (ours == targets).mean(axis=1))
    return (ours == theirs).mean(), 100 * (ours == targets).mean(), 100 * (theirs == targets).mean()


@pytest.mark.parametrize("shots", [5, 1])
def test_agrees_with_sklearn_on_synthetic_store_embeddings(glyph_store, shots):
    # Raw pixels of the synthetic glyphs: 784-d, more dimensions than supports (the span coordinates).
    ep = embedded(glyph_store, lambda x: x.flatten(1), 5, shots, 15, 200)
    agreement, ours, theirs = _agree_with_sklearn(ep)
    assert agreement >= 0.99, agreement
    assert abs(ours - theirs) <= 0.1, (ours, theirs)
    assert 30.0 < ours < 99.0  # a real problem: neither chance nor solved


@pytest.mark.parametrize("shots", [5, 1])
def test_agrees_with_converged_sklearn_on_nearly_parallel_features(glyph_store, shots):
    # An untrained Conv-4's features are nearly parallel (mean cosine 0.99 after L2N): the objective is so
    # flat that scikit-learn's default tol (1e-4 on the gradient) stops it after 2-4 lbfgs steps, and its
    # predictions move when it is run to convergence; there the two solvers find the same optimum. 16-d
    # features and 25 supports at 5 shots: the features themselves are the coordinates.
    ep = embedded(glyph_store, random_conv4(), 5, shots, 15, 200)
    agreement, ours, theirs = _agree_with_sklearn(ep, tol=1e-10)
    assert agreement >= 0.999, agreement
    assert abs(ours - theirs) <= 0.1, (ours, theirs)


def test_agrees_with_converged_sklearn_on_other_C_and_many_ways(glyph_store):
    ep = embedded(glyph_store, lambda x: x.flatten(1), 10, 1, 5, 60)
    agreement, ours, theirs = _agree_with_sklearn(ep, C=0.1, tol=1e-10)
    assert agreement >= 0.999 and abs(ours - theirs) <= 0.1, (agreement, ours, theirs)


def test_repeated_support_images_and_episode_blocks():
    # Repeated supports make the Gram matrix singular (the eigendecomposition path); results must not depend on
    # how many episodes are solved together.
    rng = np.random.default_rng(0)
    cache = torch.from_numpy(rng.random((30, 40), dtype=np.float32))
    support = rng.integers(0, 30, size=(64, 3, 4))
    support[:8, :, 1] = support[:8, :, 0]  # episodes 0-7: each support image twice
    query = rng.integers(0, 30, size=(64, 3, 5))
    head = create_head("logistic")
    full = head.score(cache, support, query)
    assert np.array_equal(np.concatenate([head.score(cache, support[:5], query[:5]),
                                          head.score(cache, support[5:], query[5:])]), full)
    ep = type("E", (), {"cache": cache, "support": support[:8], "query": query[:8]})
    ours = logistic_predictions(F.normalize(cache, dim=-1), support[:8], query[:8]).numpy()
    assert (ours == _sklearn_predictions(ep)).mean() >= 0.99


@pytest.mark.realdata
def test_agrees_with_sklearn_on_omniglot_pixels(shared_data, tmp_path_factory):
    """Raw pixels of real Omniglot test characters (784-d), 200 5-way 5-shot 15-query episodes."""
    from fewshot.data.omniglot import prepare_omniglot

    src = shared_data / "omniglot"
    if not (src / "images_evaluation.zip").is_file():
        pytest.skip(f"Omniglot archives not found in {src}: skipping")
    out = tmp_path_factory.mktemp("omniglot-heads") / "store"
    prepare_omniglot(src, out, splits=("test",), workers=2, progress=False)
    for shots in (5, 1):
        ep = embedded(out, lambda x: x.flatten(1), 5, shots, 15, 200)
        agreement, ours, theirs = _agree_with_sklearn(ep)
        print(f"omniglot pixels 5w{shots}s: agreement {agreement:.4f}, ours {ours:.2f}, scikit-learn {theirs:.2f}")
        assert agreement >= 0.99, agreement
        assert abs(ours - theirs) <= 0.1, (ours, theirs)
