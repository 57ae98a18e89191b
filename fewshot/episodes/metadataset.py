"""Meta-Dataset's variable-way, variable-shot episodes (Triantafillou et al. 2020), rule for rule, vectorised.

The rules are those of google-research/meta-dataset, read at commit 00ebaed
(`meta_dataset/data/sampling.py`; line numbers counted in that copy) with the defaults of
`meta_dataset/learn/gin/setups/data_config_common.gin` (commit 0c8a9bb), for an episode whose ways,
shots and queries are all left to the sampler (num_ways = num_support = num_query = None):

1. Ways (`sample_num_ways_uniformly`, sampling.py l. 53-70): uniform integer in
   [min_ways, min(max_ways_upper_bound, classes)], gin l. 6-7: min_ways = 5, max_ways_upper_bound = 50.
2. Classes (`sample_class_ids_uniformly`, l. 73-85): that many distinct classes, uniformly.
   Hierarchies (`EpisodeDescriptionSampler.__init__` and `sample_class_ids`, from l. 217):
   - bilevel (Omniglot): a parent (alphabet) uniformly among all, then the ways uniformly in
     [min_ways, min(max_ways_upper_bound, classes of that parent)] and the classes within it. Meta-Dataset
     refuses a parent with fewer than min_ways classes; so does this sampler.
   - dag (ImageNet): an internal node uniformly among those spanning min_ways to
     MAX_SPANNING_LEAVES_ELIGIBLE = 392 leaves (l. 50), its leaves as classes, sub-sampled uniformly to
     max_ways_upper_bound when more. The store's hierarchy is one level deep, so the internal nodes are
     the parents and the root (all classes of the split), each eligible under the same rule.
3. Queries a class (`compute_num_query`, l. 88-121): min(max_num_query, min over the episode's classes
   of images // 2), the same for every class; gin l. 8: max_num_query = 10.
4. Support set size (`sample_support_set_size`, l. 124-163): with beta ~ U[0, 1) and remaining = images -
   queries, min(sum_c floor(beta * min(max_support_size_contrib_per_class, remaining_c) + 1),
   max_support_set_size); gin l. 12-13: 500 and 100.
5. Shots a class (`sample_num_support_per_class`, l. 166-214): weights images_c * exp(U(min_log_weight,
   max_log_weight)) (gin l. 14-15: log 0.5, log 2), normalised to proportions p_c;
   shots_c = min(floor(p_c * (support_size - ways)) + 1, remaining_c).
6. Images: shots_c + queries distinct images of each class, uniformly (Meta-Dataset's readers shuffle
   each class); the first shots_c are the support. min_examples_in_class = 0 (gin l. 11) and
   ignore_hierarchy_probability = 0 (gin l. 18): no class is filtered, the hierarchy is always used.

What differs: Meta-Dataset draws from a module-level numpy RandomState inside a TensorFlow pipeline; here
each sampler owns a numpy PCG64 Generator, so the same seed gives the same episodes, but not Meta-Dataset's
own random stream. The rules are applied to many episodes at once (padded to max_ways_upper_bound, masked);
written by hand because no library samples Meta-Dataset episodes outside its TensorFlow loader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fewshot.episodes.ragged import RaggedEpisodes
from fewshot.episodes.sampler import smallest_keys
from fewshot.errors import FewshotError

MAX_SPANNING_LEAVES_ELIGIBLE = 392
HIERARCHIES = ("none", "bilevel", "dag")
# Episodes drawn together: bounds the (episodes, classes of a node) key arrays to a few MB.
_CHUNK_EPISODES = 1000
# A class whose image count is at least this many times the images wanted from it draws them by rejection
# (a few random integers); smaller classes sort a random key per image (cheap when the class is small).
_REJECTION_RATIO = 4
_KEY_BLOCK = 1 << 22  # keys sorted at once when drawing images by keys
_SORT_BLOCK = 1 << 16  # ranks checked for repeats at once (about a cache's worth)


@dataclass(frozen=True)
class MetaDatasetConfig:
    """EpisodeDescriptionConfig's defaults in data_config_common.gin (l. 6-18)."""

    min_ways: int = 5
    max_ways_upper_bound: int = 50
    max_num_query: int = 10
    max_support_set_size: int = 500
    max_support_size_contrib_per_class: int = 100
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)


def default_hierarchy(dataset: str, has_parents: bool) -> str:
    """Meta-Dataset's choice: bilevel for Omniglot, the DAG for ImageNet-like data, else none."""
    if not has_parents:
        return "none"
    name = dataset.lower()
    if name.startswith("omniglot"):
        return "bilevel"
    if "imagenet" in name:
        return "dag"
    return "none"


def hierarchy_nodes(n_classes: int, parent_index: np.ndarray | None, hierarchy: str,
                    min_ways: int) -> list[np.ndarray]:
    """The class groups an episode's classes are drawn from, by Meta-Dataset's eligibility rules."""
    everything = np.arange(n_classes)
    if hierarchy == "none":
        return [everything]
    if hierarchy not in HIERARCHIES:
        raise FewshotError(f"unknown hierarchy {hierarchy!r}; choose one of {', '.join(HIERARCHIES)}")
    if parent_index is None:
        raise FewshotError(f"hierarchy {hierarchy!r} needs classes that name their parent; this split names none "
                           "(use --hierarchy none)")
    parent_index = np.asarray(parent_index)
    groups = [np.flatnonzero(parent_index == p) for p in np.unique(parent_index)]
    if hierarchy == "bilevel":
        small = [len(g) for g in groups if len(g) < min_ways]
        if small:
            raise FewshotError(f"a parent has {small[0]} classes, fewer than min_ways={min_ways}; Meta-Dataset's "
                               "bilevel sampler refuses such parents (use --hierarchy none)")
        return groups
    nodes = [g for g in groups if min_ways <= len(g) <= MAX_SPANNING_LEAVES_ELIGIBLE]
    if len(groups) > 1 and min_ways <= n_classes <= MAX_SPANNING_LEAVES_ELIGIBLE:
        nodes.append(everything)  # the root, an internal node spanning every leaf of the split
    if not nodes:
        raise FewshotError(f"no parent spans between {min_ways} and {MAX_SPANNING_LEAVES_ELIGIBLE} classes; "
                           "Meta-Dataset's DAG sampler has no eligible node (use --hierarchy none)")
    return nodes


def padded_groups(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(members (G, M) padded with 0, sizes (G,)) of class groups."""
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    members = np.zeros((len(groups), int(sizes.max())), dtype=np.int64)
    for i, g in enumerate(groups):
        members[i, : len(g)] = g
    return members, sizes


def choose_in_groups(rng: np.random.Generator, members: np.ndarray, sizes: np.ndarray, group: np.ndarray,
                     width: int) -> np.ndarray:
    """`width` distinct classes (E, width) of each episode's group, in random order (uniform subsets).

    Positions past a group's size hold other groups' padding; callers keep only the first `ways` columns,
    which are always inside the group (ways <= its size). Groups of at least 4 x width classes draw the
    positions by rejection (distinct_ranks); smaller ones take the smallest of a uniform key per member.
    """
    span = members.shape[1]
    width = min(width, span)
    if sizes.min() >= _REJECTION_RATIO * width:  # large groups: `width` distinct positions by rejection
        positions = distinct_ranks(rng, sizes[group], np.full(len(group), width)).reshape(len(group), width)
    else:
        keys = rng.random((len(group), span))
        keys[np.arange(span) >= sizes[group][:, None]] = 2.0
        positions = smallest_keys(keys, width, np.minimum(sizes[group], span))
    return np.take_along_axis(members[group], positions, axis=1)


def distinct_ranks(rng: np.random.Generator, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each row, wanted[i] distinct uniform ranks in [0, counts[i]), concatenated, in random order.

    Large classes (counts >= 4 x wanted) draw integers and redraw every rank equal to another of its row
    until none is: relabelling the images leaves that process unchanged, and the relabellings take any
    ordered sample of distinct ranks to any other, so all are equally likely.
    Small classes take the smallest of a uniform key per image. Both are vectorised over rows.
    """
    counts, wanted = np.asarray(counts, dtype=np.int64), np.asarray(wanted, dtype=np.int64)
    out = np.empty(int(wanted.sum()), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(wanted)])
    if np.any(wanted > counts):
        raise FewshotError("asked for more distinct images than a class holds (sampler bug)")
    by_rejection = counts >= _REJECTION_RATIO * wanted
    if by_rejection.all():
        return _ranks_by_rejection(rng, counts, wanted)
    rows = np.flatnonzero(~by_rejection)
    if len(rows):
        ranks, valid = _ranks_by_keys(rng, counts[rows], wanted[rows])
        # Row-major order of `valid` is row by row, each row's ranks in draw order: the layout of `out`.
        out[np.repeat(starts[rows], wanted[rows]) + (np.cumsum(valid, axis=1) - 1)[valid]] = ranks[valid]
    rows = np.flatnonzero(by_rejection)
    if len(rows):
        ranks = _ranks_by_rejection(rng, counts[rows], wanted[rows])
        within = np.arange(len(ranks)) - np.repeat(np.cumsum(wanted[rows]) - wanted[rows], wanted[rows])
        out[np.repeat(starts[rows], wanted[rows]) + within] = ranks
    return out


def _ranks_by_keys(rng, counts, wanted):
    width = int(wanted.max())
    span = int(counts.max())
    ranks = np.empty((len(counts), width), dtype=np.int64)
    block = max(1, _KEY_BLOCK // span)
    for start in range(0, len(counts), block):
        c = counts[start:start + block]
        keys = rng.random((len(c), span))
        keys[np.arange(span) >= c[:, None]] = 2.0
        ranks[start:start + block] = smallest_keys(keys, width, c)
    return ranks, np.arange(width) < wanted[:, None]


def _ranks_by_rejection(rng, counts, wanted):
    """Flat: uniform integers a row; every rank equal to another of its row is drawn again, until none is.

    Which values repeat is found a block of rows at a time (about _SORT_BLOCK ranks) by sorting the keys
    row * stride + rank (a plain sort, several times faster than an argsort); where they sit, by a lookup
    table over the block's keys. Redrawing all equal ranks (not all but one) keeps the process unchanged
    under relabelling the images, which is all uniformity needs.
    """
    row = np.repeat(np.arange(len(counts)), wanted)
    limit = counts[row]
    ranks = (rng.random(len(row)) * limit).astype(np.int64)
    stride = int(counts.max()) + 1
    ends = np.cumsum(wanted)
    starts = ends - wanted
    check_rows = np.arange(len(counts))
    first_round = True
    table = None
    while len(check_rows):
        # Blocks of consecutive rows to check, about _SORT_BLOCK ranks each.
        block_of = np.cumsum(wanted[check_rows]) // _SORT_BLOCK
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        repeats = []
        for rows in np.split(check_rows, cuts):
            if first_round:  # every row: the block's ranks are one contiguous stretch
                positions = slice(int(starts[rows[0]]), int(ends[rows[-1]]))
                local_row = row[positions] - rows[0]
            else:
                positions = _take_ranges(starts[rows], wanted[rows])
                local_row = np.repeat(np.arange(len(rows)), wanted[rows])
            key_type = np.int32 if len(rows) * stride < 2**31 else np.int64
            keys = (local_row * stride + ranks[positions]).astype(key_type)
            ordered = np.sort(keys)
            repeated = ordered[1:][ordered[1:] == ordered[:-1]]
            if len(repeated) == 0:
                continue
            if table is None or len(table) < len(rows) * stride:
                table = np.zeros(max(len(rows) * stride, _SORT_BLOCK * 16), dtype=bool)
            table[repeated] = True
            hit = np.flatnonzero(table[keys])
            table[repeated] = False  # the table is reused: leave it clear
            repeats.append(np.arange(positions.start, positions.stop)[hit] if first_round else positions[hit])
        first_round = False
        if not repeats:
            break
        repeats = np.concatenate(repeats)
        ranks[repeats] = (rng.random(len(repeats)) * limit[repeats]).astype(np.int64)
        check_rows = np.unique(row[repeats])
    return ranks


def _take_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of the ranges [starts[i], starts[i] + lengths[i])."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths) + \
        np.arange(int(lengths.sum()), dtype=np.int64)


def compose(images: np.ndarray, used: np.ndarray, beta: np.ndarray, log_weights: np.ndarray,
            config: MetaDatasetConfig = MetaDatasetConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Queries a class (E,) and shots of each class (E, W) of episodes, given their random draws.

    `images` (E, W) images of each chosen class, `used` (E, W) which columns are classes (the first ways),
    `beta` (E,) ~ U[0, 1), `log_weights` (E, W) ~ U(min_log_weight, max_log_weight). Rules 3-5 of the module
    docstring (compute_num_query, sample_support_set_size, sample_num_support_per_class); unused columns
    get 0 shots.
    """
    ways = used.sum(axis=1)
    # compute_num_query: min(max_num_query, the smallest class // 2), one count for every class.
    queries = np.minimum(config.max_num_query, np.where(used, images // 2, np.iinfo(np.int64).max).min(axis=1))
    remaining = images - queries[:, None]
    # sample_support_set_size: floor(beta * min(contrib, remaining) + 1) summed, capped.
    contributions = np.minimum(config.max_support_size_contrib_per_class, remaining)
    support_size = np.minimum(np.where(used, np.floor(beta[:, None] * contributions + 1), 0).sum(axis=1),
                              config.max_support_set_size)
    # sample_num_support_per_class: proportions of images * exp(log weight); one shot guaranteed.
    weights = np.where(used, images * np.exp(log_weights), 0.0)
    proportions = weights / weights.sum(axis=1, keepdims=True)
    desired = np.floor(proportions * (support_size - ways)[:, None]).astype(np.int64) + 1
    return queries, np.where(used, np.minimum(desired, remaining), 0)


class MetaDatasetSampler:
    """Meta-Dataset episodes over a split's classes (see the module docstring for the rules and sources).

    `class_counts` (C,) images of each class; `parent_index` (C,) each class's parent, or None; `hierarchy`
    'none', 'bilevel' or 'dag'. `sample(count)` returns RaggedEpisodes; successive calls continue the stream.
    """

    def __init__(self, class_counts, parent_index: np.ndarray | None = None, hierarchy: str = "none",
                 seed: int = 0, config: MetaDatasetConfig = MetaDatasetConfig()) -> None:
        self.class_counts = np.asarray(class_counts, dtype=np.int64)
        self.config = config
        self.hierarchy = hierarchy
        if len(self.class_counts) < config.min_ways:
            raise FewshotError(f"the split has {len(self.class_counts)} classes, fewer than Meta-Dataset's "
                               f"min_ways={config.min_ways}")
        if self.class_counts.min() < 2:
            # compute_num_query: 'Expected at least 2 images per class.'
            raise FewshotError("every class needs at least 2 images for Meta-Dataset episodes (half of the smallest "
                               "class are the queries); a class of the split has "
                               f"{int(self.class_counts.min())}")
        self.groups = hierarchy_nodes(len(self.class_counts), parent_index, hierarchy, config.min_ways)
        self.members, self.sizes = padded_groups(self.groups)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def sample(self, count: int) -> RaggedEpisodes:
        if count < 1:
            raise FewshotError(f"episode count must be a positive integer, got {count}")
        parts = [self._sample_chunk(min(_CHUNK_EPISODES, count - s)) for s in range(0, count, _CHUNK_EPISODES)]
        return parts[0] if len(parts) == 1 else RaggedEpisodes.concatenate(parts)

    def _sample_chunk(self, n: int) -> RaggedEpisodes:
        c, rng = self.config, self.rng
        group = rng.integers(0, len(self.groups), size=n)
        size = self.sizes[group]
        if self.hierarchy == "dag":
            ways = np.minimum(size, c.max_ways_upper_bound)
        else:
            ways = rng.integers(c.min_ways, np.minimum(c.max_ways_upper_bound, size) + 1)
        width = int(min(c.max_ways_upper_bound, self.members.shape[1]))
        classes = choose_in_groups(rng, self.members, self.sizes, group, width)
        used = np.arange(width) < ways[:, None]
        images = np.where(used, self.class_counts[classes], 0)
        beta = rng.random(n)
        log_weights = rng.uniform(c.min_log_weight, c.max_log_weight, (n, width))
        queries, shots = compose(images, used, beta, log_weights, c)
        flat_classes = classes[used]
        support_counts = shots[used]
        query_counts = np.repeat(queries, ways)
        ranks = distinct_ranks(rng, self.class_counts[flat_classes], support_counts + query_counts)
        # Each class's first shots ranks are its support, the rest its queries: +1 where a class starts,
        # -1 where its queries start, summed up.
        class_first = np.concatenate([[0], np.cumsum(support_counts + query_counts)[:-1]])
        marks = np.zeros(len(ranks) + 1, dtype=np.int8)
        marks[class_first] = 1
        marks[class_first + support_counts] -= 1
        is_support = np.cumsum(marks[:-1], dtype=np.int8).astype(bool)
        return RaggedEpisodes(ways.astype(np.int64), flat_classes, support_counts, query_counts,
                              ranks[is_support], ranks[~is_support])
