"""Meta-Dataset's episode rules checked on many sampled episodes (fewshot.episodes.metadataset)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fewshot.episodes.metadataset import (
    MetaDatasetConfig, MetaDatasetSampler, compose, default_hierarchy, distinct_ranks, hierarchy_nodes,
)
from fewshot.errors import FewshotError

RNG = np.random.default_rng(7)
# ImageNet-like: uneven classes (some small enough that half of one caps the queries under 10).
COUNTS = np.concatenate([RNG.integers(30, 1300, size=70), [8, 13, 19, 600, 12, 40]])
PARENTS = np.arange(len(COUNTS)) % 6  # six parents of 12-13 classes
CONFIG = MetaDatasetConfig()


def _episodes(hierarchy="none", count=3000, seed=0, counts=COUNTS, parents=PARENTS):
    return MetaDatasetSampler(counts, parents, hierarchy, seed).sample(count)


def _check_rules(episodes, counts):
    """Every rule an episode must satisfy whatever the random draws were."""
    cs, ss, qs = episodes.class_start, episodes.support_start, episodes.query_start
    assert (episodes.ways >= CONFIG.min_ways).all() and (episodes.ways <= CONFIG.max_ways_upper_bound).all()
    for e in range(len(episodes)):
        classes = episodes.classes[cs[e]:cs[e + 1]]
        assert len(set(classes.tolist())) == len(classes)  # distinct classes
        images = counts[classes]
        shots = episodes.support_counts[cs[e]:cs[e + 1]]
        queries = episodes.query_counts[cs[e]:cs[e + 1]]
        # compute_num_query: one count for all classes, min(10, half the smallest class).
        assert (queries == min(CONFIG.max_num_query, int((images // 2).min()))).all()
        # sample_num_support_per_class: at least one, at most what the queries leave.
        assert (shots >= 1).all() and (shots <= images - queries).all()
        # sample_support_set_size: the budget (the shots add up to at most the support set size <= 500).
        assert shots.sum() <= CONFIG.max_support_set_size
        for j, c in enumerate(classes):
            t = cs[e] + j
            support = episodes.support[ss[t]:ss[t + 1]]
            query = episodes.query[qs[t]:qs[t + 1]]
            both = np.concatenate([support, query])
            assert len(np.unique(both)) == len(both)  # no image both in support and query, none twice
            assert both.min() >= 0 and both.max() < counts[c]


def test_composition_by_hand():
    """Queries, support budget and shots of three episodes worked out by hand from Meta-Dataset's formulas."""
    images = np.array([[20, 10, 7, 0, 0, 0], [1500, 500, 0, 0, 0, 0], [1000] * 6])
    used = images > 0
    beta = np.array([0.5, 0.9, 0.99])
    log_weights = np.zeros((3, 6))
    queries, shots = compose(images, used, beta, log_weights)
    # 1: q = min(10, 7 // 2) = 3; remaining 17, 7, 4; size = floor(9.5) + floor(4.5) + floor(3) = 16;
    #    proportions 20/37, 10/37, 7/37 of 16 - 3 = 13: floor(7.03, 3.51, 2.46) + 1 = 8, 4, 3.
    # 2: q = 10; contributions capped at 100: size = 2 floor(0.9 * 100 + 1) = 182; 3/4 and 1/4 of 180 + 1.
    # 3: q = 10; 6 floor(99 + 1) = 600 > 500: size 500; 494 / 6 = 82.3 each: 83.
    assert queries.tolist() == [3, 10, 10]
    assert shots.tolist() == [[8, 4, 3, 0, 0, 0], [136, 46, 0, 0, 0, 0], [83] * 6]
    # Weights 1.9 and 0.6 on equal classes: proportions 0.76 and 0.24.
    queries, shots = compose(np.array([[100, 100]]), np.array([[True, True]]), np.array([0.5]),
                             np.log([[1.9, 0.6]]))
    # q = 10; remaining 90 each; size 2 floor(46) = 92; 90 to share: floor(68.4) + 1, floor(21.6) + 1.
    assert queries.tolist() == [10] and shots.tolist() == [[69, 22]]
    # The shots never exceed what the queries leave: 2 images, 1 query, at most 1 shot.
    _, shots = compose(np.array([[2, 2, 2, 2, 2]]), np.ones((1, 5), bool), np.array([0.99]), np.zeros((1, 5)))
    assert shots.tolist() == [[1, 1, 1, 1, 1]]


def test_uniform_rules_hold_on_many_episodes():
    episodes = _episodes("none", count=2000)
    _check_rules(episodes, COUNTS)
    # A class of 8 images caps the queries at 4 whenever it is drawn.
    small = np.flatnonzero(COUNTS == 8)[0]
    cs = episodes.class_start
    with_small = [e for e in range(len(episodes)) if small in episodes.classes[cs[e]:cs[e + 1]]]
    assert with_small and all((episodes.query_counts[cs[e]:cs[e + 1]] == 4).all() for e in with_small)


def test_ways_are_uniform_between_5_and_50():
    counts = np.full(80, 4)
    ways = MetaDatasetSampler(counts, seed=1).sample(9200).ways
    observed = np.bincount(ways, minlength=51)[5:51]
    assert ways.min() == 5 and ways.max() == 50
    assert stats.chisquare(observed).pvalue > 1e-3  # 46 equally likely values
    # min(50, classes): with 12 classes the ways are 5..12.
    assert set(MetaDatasetSampler(np.full(12, 4), seed=0).sample(800).ways.tolist()) == set(range(5, 13))


def test_support_set_size_follows_beta_and_the_budget():
    """Equal classes of 40: remaining = 30 each, contributions 30, so the size is ~ U over W..min(30W, 500)."""
    episodes = MetaDatasetSampler(np.full(60, 40), seed=2).sample(3000)
    sizes = episodes.support_sizes()
    ways = episodes.ways
    assert (sizes >= ways).all() and (sizes <= np.minimum(30 * ways, 500)).all()
    # The budget binds: for W >= 17, 30 W > 500, so the size is often 500; the shots then add up to more
    # than 500 - W (each of the W floors loses less than one image), never to more than 500.
    large = ways >= 40
    assert (sizes[large] > 500 - ways[large]).mean() > 0.3
    # Imbalance: weights differ by at most 4x (exp of U(log 1/2, log 2)), so with equal classes a class
    # gets at most about 4x the share of another: floor(4 x + 1) + 1 bounds it (x = smaller share's floor).
    cs = episodes.class_start
    for e in range(200):
        shots = episodes.support_counts[cs[e]:cs[e + 1]]
        assert shots.max() - 1 <= 4 * shots.min() + 4


def test_shots_are_imbalanced_by_image_counts():
    """Proportions follow images x weight: a class with 10x the images gets many more shots on average."""
    counts = np.array([100] * 10 + [1000] * 10)
    episodes = MetaDatasetSampler(counts, seed=3).sample(2000)
    big = counts[episodes.classes] == 1000
    assert episodes.support_counts[big].mean() > 3 * episodes.support_counts[~big].mean()


def test_bilevel_keeps_every_episode_in_one_parent():
    episodes = _episodes("bilevel", count=2000)
    _check_rules(episodes, COUNTS)
    cs = episodes.class_start
    sizes = np.bincount(PARENTS)
    for e in range(len(episodes)):
        parents = set(PARENTS[episodes.classes[cs[e]:cs[e + 1]]].tolist())
        assert len(parents) == 1
        assert episodes.ways[e] <= sizes[parents.pop()]
    # Every parent is chosen (uniformly: ~1/6 each).
    first = PARENTS[episodes.classes[cs[:-1]]]
    assert stats.chisquare(np.bincount(first, minlength=6)).pvalue > 1e-3


def test_dag_uses_a_parent_or_the_root_with_all_its_classes_up_to_50():
    episodes = _episodes("dag", count=1500)
    _check_rules(episodes, COUNTS)
    cs = episodes.class_start
    sizes = np.bincount(PARENTS)
    for e in range(len(episodes)):
        parents = set(PARENTS[episodes.classes[cs[e]:cs[e + 1]]].tolist())
        if len(parents) == 1:
            assert episodes.ways[e] == sizes[parents.pop()]  # a parent's leaves, all of them
        else:
            assert episodes.ways[e] == 50  # the root spans 76 leaves: sub-sampled to 50
    nodes = hierarchy_nodes(len(COUNTS), PARENTS, "dag", 5)
    assert len(nodes) == 7 and len(nodes[-1]) == len(COUNTS)


def test_same_seed_same_episodes_other_seed_other():
    a, b, c = _episodes(seed=5, count=1500), _episodes(seed=5, count=1500), _episodes(seed=6, count=1500)
    for name in ("ways", "classes", "support_counts", "query_counts", "support", "query"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.ways, c.ways)


def test_distinct_ranks_by_keys_and_by_rejection_are_uniform():
    rng = np.random.default_rng(0)
    # 3 of 6 (keys) and 3 of 40 (rejection): each rank equally likely, each row distinct.
    for count in (6, 40):
        ranks = distinct_ranks(rng, np.full(4000, count), np.full(4000, 3)).reshape(4000, 3)
        assert all(len(set(r)) == 3 for r in ranks.tolist()) and ranks.max() < count
        assert stats.chisquare(np.bincount(ranks.ravel(), minlength=count)).pvalue > 1e-3
        # Ordered pairs: the first and second pick are independent of order (no position favours low ranks).
        assert abs(ranks[:, 0].mean() - (count - 1) / 2) < 0.1 * count


def test_errors_are_one_line_and_name_the_fix():
    with pytest.raises(FewshotError, match="fewer than Meta-Dataset's min_ways=5"):
        MetaDatasetSampler(np.full(4, 20))
    with pytest.raises(FewshotError, match="at least 2 images"):
        MetaDatasetSampler(np.array([1, 5, 5, 5, 5, 5]))
    with pytest.raises(FewshotError, match="fewer than min_ways=5"):
        MetaDatasetSampler(np.full(12, 20), np.array([0] * 9 + [1] * 3), "bilevel")
    with pytest.raises(FewshotError, match="names none"):
        MetaDatasetSampler(np.full(12, 20), None, "dag")


def test_default_hierarchy_is_meta_datasets_choice():
    assert default_hierarchy("omniglot", True) == "bilevel"
    assert default_hierarchy("tieredimagenet", True) == "dag"
    assert default_hierarchy("cub", True) == "none" and default_hierarchy("omniglot", False) == "none"
