"""Meta-Dataset protocols: sampling against a plain Python sampler, scoring against fixed 5-way 5-shot.

    .venv/bin/python benchmarks/bench_protocols.py [--quick] [--json FILE]

- Sampling: fewshot.episodes.metadataset.MetaDatasetSampler against `python_sampler` below, a
  straightforward implementation of the same rules (one episode at a time, numpy calls a class, as
  Meta-Dataset's own sampler does), in episodes (tasks) per second of this thread's CPU time, on three
  splits: ImageNet-like (608 classes of 732-1300 images in 34 parents, the DAG rule), the same without
  hierarchy, and Omniglot-like (1623 characters x 20 drawings in 50 alphabets of 14-55, the bilevel rule).
  Target: >= 5x on each.
- Scoring: 10,000 Meta-Dataset episodes (ImageNet-like uniform rule over 100 classes x 600 images) scored
  from cached embeddings (60,000 x 640 float32, ResNet-12 width; random values: the cost does not depend
  on them) with fewshot.evaluate.episodes.score_ragged_episodes, against 10,000 fixed 5-way 5-shot
  15-query episodes of the same split with score_episodes, in queries per second of wall time (torch's
  threads) and of one thread's CPU time. Target: Meta-Dataset >= 0.5x the fixed queries/s.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, add_common_args, header, interleaved, print_table  # noqa: E402

import torch  # noqa: E402

SCORE_CLASSES, SCORE_PER_CLASS, SCORE_DIM = 100, 600, 640


def python_sampler(counts: np.ndarray, groups: list[np.ndarray], hierarchy: str, count: int, seed: int = 0,
                   min_ways: int = 5, max_ways: int = 50, max_query: int = 10, max_support: int = 500,
                   max_contrib: int = 100) -> list:
    """Meta-Dataset's rules written the plain way: one episode, one class at a time (the comparison)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    episodes = []
    for _ in range(count):
        group = groups[rng.integers(len(groups))]
        if hierarchy == "dag":
            ways = min(len(group), max_ways)
        else:
            ways = int(rng.integers(min_ways, min(max_ways, len(group)) + 1))
        classes = rng.choice(group, ways, replace=False)
        images = counts[classes]
        queries = min(max_query, int((images // 2).min()))
        remaining = images - queries
        beta = rng.random()
        size = min(np.floor(beta * np.minimum(max_contrib, remaining) + 1).sum(), max_support)
        weights = images * np.exp(rng.uniform(math.log(0.5), math.log(2.0), ways))
        shots = np.minimum(np.floor(weights / weights.sum() * (size - ways)).astype(np.int64) + 1, remaining)
        episode = []
        for c, s in zip(classes, shots):
            ranks = rng.choice(counts[c], s + queries, replace=False)
            episode.append((c, ranks[:s], ranks[s:]))
        episodes.append(episode)
    return episodes


def splits() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """name -> (class counts, parent of each class, hierarchy rule)."""
    rng = np.random.default_rng(0)
    imagenet_counts = rng.integers(732, 1301, size=608)
    imagenet_parents = np.sort(rng.integers(0, 34, size=608))
    alphabet_sizes = rng.integers(14, 56, size=50)
    alphabet_sizes = np.round(alphabet_sizes * 1623 / alphabet_sizes.sum()).astype(int)
    omniglot_parents = np.repeat(np.arange(50), alphabet_sizes)
    return {
        "ImageNet-like, dag": (imagenet_counts, imagenet_parents, "dag"),
        "ImageNet-like, no hierarchy": (imagenet_counts, imagenet_parents, "none"),
        "Omniglot-like, bilevel": (np.full(len(omniglot_parents), 20), omniglot_parents, "bilevel"),
    }


def bench_sampling(report: Report, quick: bool) -> None:
    from fewshot.episodes.metadataset import MetaDatasetSampler

    rounds = 2 if quick else 3
    count = 1000 if quick else 2000
    rows = []
    for name, (counts, parents, hierarchy) in splits().items():
        sampler = MetaDatasetSampler(counts, parents, hierarchy, seed=0)
        groups = sampler.groups
        seconds = interleaved({"fewshot": lambda: sampler.sample(count),
                               "python": lambda: python_sampler(counts, groups, hierarchy, count)},
                              rounds=rounds, min_seconds=0.3, warmup=0, clock="cpu")
        ratio = seconds["python"] / seconds["fewshot"]
        episodes = sampler.sample(count)
        rows.append([name, f"{count / seconds['fewshot']:,.0f}", f"{count / seconds['python']:,.0f}", f"{ratio:.1f}x",
                     f"{episodes.ways.mean():.1f}", f"{episodes.support_sizes().mean():.0f}"])
        report.figure(f"sampling {name} tasks/s", count / seconds["fewshot"])
        report.figure(f"sampling {name} python tasks/s", count / seconds["python"])
        report.target(f"Meta-Dataset sampling vs plain Python, {name}", ratio, 5.0, True, "x")
    print(f"   sampling {count:,} episodes a call (CPU time of this thread, median of {rounds} interleaved rounds):")
    print_table(rows, ["split", "fewshot tasks/s", "plain Python tasks/s", "ratio", "mean ways", "mean support"])


def bench_scoring(report: Report, quick: bool, n_episodes: int) -> None:
    from fewshot.episodes.metadataset import MetaDatasetSampler
    from fewshot.episodes.sampler import EpisodeSampler
    from fewshot.evaluate.episodes import score_episodes, score_ragged_episodes

    rounds = 2 if quick else 3
    counts = np.full(SCORE_CLASSES, SCORE_PER_CLASS)
    offsets = np.arange(SCORE_CLASSES) * SCORE_PER_CLASS
    emb = torch.from_numpy(np.random.default_rng(0).standard_normal((SCORE_CLASSES * SCORE_PER_CLASS, SCORE_DIM),
                                                                    dtype=np.float32))
    md = MetaDatasetSampler(counts, seed=0).sample(n_episodes)
    md_support, md_query = md.rows(offsets)
    fixed = EpisodeSampler(counts, 5, 5, 15, seed=0).sample(n_episodes)
    f_support, f_query = fixed.rows(offsets)
    md_queries, fixed_queries = len(md_query), f_query.size

    def ragged():
        return score_ragged_episodes(emb, md_support, md_query, md.ways, md.support_counts, md.query_counts)

    def fixed_shape():
        return score_episodes(emb, f_support, f_query)

    threads = torch.get_num_threads()
    wall = interleaved({"md": ragged, "fixed": fixed_shape}, rounds=rounds, min_seconds=0.1, warmup=0, clock="wall")
    torch.set_num_threads(1)
    try:
        one = interleaved({"md": ragged, "fixed": fixed_shape}, rounds=rounds, min_seconds=0.1, warmup=0, clock="cpu")
    finally:
        torch.set_num_threads(threads)
    rows = []
    for key, label, queries in (("md", "Meta-Dataset (ragged)", md_queries), ("fixed", "5-way 5-shot 15-query",
                                                                           fixed_queries)):
        rows.append([label, f"{queries:,}", f"{wall[key]:.2f}", f"{queries / wall[key]:,.0f}", f"{one[key]:.2f}",
                     f"{queries / one[key]:,.0f}"])
    print(f"\n   scoring {n_episodes:,} episodes from cached embeddings ({SCORE_CLASSES * SCORE_PER_CLASS:,} x "
          f"{SCORE_DIM} float32; Meta-Dataset: mean {md.ways.mean():.1f} ways, {md.support_sizes().mean():.0f} "
          f"support and {md.query_sizes().mean():.0f} query images an episode; median of {rounds} rounds):")
    print_table(rows, ["episodes", "queries", f"wall s ({threads} threads)", "queries/s", "CPU s (1 thread)",
                       "queries/s (1 thread)"])
    wall_ratio = (md_queries / wall["md"]) / (fixed_queries / wall["fixed"])
    one_ratio = (md_queries / one["md"]) / (fixed_queries / one["fixed"])
    report.figure("scoring md queries/s wall", md_queries / wall["md"])
    report.figure("scoring fixed 5w5s queries/s wall", fixed_queries / wall["fixed"])
    report.figure("scoring md queries/s 1 thread", md_queries / one["md"])
    report.figure("scoring fixed 5w5s queries/s 1 thread", fixed_queries / one["fixed"])
    report.target(f"Meta-Dataset scoring queries/s vs fixed 5w5s ({threads} threads, wall)", wall_ratio, 0.5, True,
                  "x")
    report.target("Meta-Dataset scoring queries/s vs fixed 5w5s (1 thread, CPU)", one_ratio, 0.5, True, "x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=10_000, help="episodes to score (default 10,000)")
    add_common_args(parser)
    args = parser.parse_args()
    from fewshot.device import tune_allocator

    tune_allocator()
    header("Meta-Dataset protocols: sampling vs plain Python, scoring vs fixed 5-way 5-shot")
    report = Report("protocols")
    started = time.perf_counter()
    bench_sampling(report, args.quick)
    bench_scoring(report, args.quick, 2_000 if args.quick else args.episodes)
    print(f"\n   ({time.perf_counter() - started:.0f} s in all)")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
