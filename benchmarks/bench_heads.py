"""Classifier heads on cached features: batched logistic regression against the RFS loop; SimpleShot against
nearest prototype.

    .venv/bin/python benchmarks/bench_heads.py [--quick] [--json FILE] [--loop-episodes N]

- Features: a miniImageNet-sized test split (20 classes x 600) of 640-d post-ReLU features (ResNet-12's width)
  with class structure (relu of a class centre plus noise, seeded; logistic regression gets about 75% of the
  queries right), so the classifiers work on a problem of realistic difficulty; 10,000 5-way 5-shot 15-query
  episodes drawn from it.
- Logistic regression: the `logistic` head (fewshot/evaluate/heads/logistic.py: all episodes solved together in torch)
  against the RFS evaluation loop (WangYueFt/rfs eval/meta_eval.py): per episode L2-normalise the support and
  query features, fit scikit-learn's LogisticRegression(random_state=0, solver="lbfgs", max_iter=1000;
  multinomial, C = 1), predict the queries. The loop is timed on the first --loop-episodes episodes (default
  1,000) and extrapolated to 10,000 (printed as such); --loop-episodes 10000 times it all. Both in wall time,
  in one run, the head with torch's threads, the loop with BLAS limited to one thread (threadpoolctl): on
  this shared 2-core machine scikit-learn's default BLAS threads made each tiny fit 3-15x slower, so the
  one-thread loop is the fair, faster baseline. Also printed: how often the two predict the same label on the
  looped episodes, and their mean accuracies there.
  Wall time and CPU time (all threads of the process) are both printed, and the speed-up target is checked
  on each.
- SimpleShot (CL2N, its mean fitted beforehand, the transform of the cache counted) against the
  nearest-prototype head (today's scoring), wall time, median of interleaved rounds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, add_common_args, header, interleaved, print_table  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

WAYS, SHOTS, QUERIES, EPISODES = 5, 5, 15, 10_000
CLASSES, PER_CLASS, DIM = 20, 600, 640


def features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(test features (12,000, 640), training features (64 x 100, 640)), post-ReLU with class structure."""
    rng = np.random.default_rng(seed)

    def split(classes: int, per_class: int) -> torch.Tensor:
        centres = rng.standard_normal((classes, 1, DIM), dtype=np.float32)
        noise = rng.standard_normal((classes, per_class, DIM), dtype=np.float32) * 4.5
        return torch.from_numpy(np.maximum(centres + noise, 0).reshape(classes * per_class, DIM))

    return split(CLASSES, PER_CLASS), split(64, 100)


def episode_rows(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from fewshot.episodes.sampler import EpisodeSampler

    batch = EpisodeSampler(np.full(CLASSES, PER_CLASS), WAYS, SHOTS, QUERIES, seed).sample(count)
    return batch.rows(np.arange(CLASSES) * PER_CLASS)


def rfs_loop(cache: torch.Tensor, support: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The RFS evaluation loop (meta_eval.py, classifier 'LR'): predictions (E, N*Q)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    labels = np.repeat(np.arange(WAYS), SHOTS)
    out = []
    with threadpool_limits(1):
        for e in range(len(support)):
            out.append(_rfs_episode(LogisticRegression, cache, support[e], query[e], labels))
    return np.stack(out)


def _rfs_episode(LogisticRegression, cache, support, query, labels) -> np.ndarray:
    """One episode as meta_eval.py does it: normalise, fit, predict."""
    support_features = F.normalize(cache[torch.from_numpy(support.reshape(-1))], dim=1).numpy()
    query_features = F.normalize(cache[torch.from_numpy(query.reshape(-1))], dim=1).numpy()
    clf = LogisticRegression(random_state=0, solver="lbfgs", max_iter=1000)
    clf.fit(support_features, labels)
    return clf.predict(query_features)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--loop-episodes", type=int, default=1000, help="episodes the RFS loop is timed on")
    args = parser.parse_args()
    from fewshot.evaluate.heads import create_head
    from fewshot.evaluate.heads.logistic import logistic_predictions

    header("bench_heads: classifier heads over cached 640-d features, 10,000 5-way 5-shot 15-query episodes")
    report = Report("bench_heads")
    cache, train = features()
    support, query = episode_rows(EPISODES)
    targets = np.repeat(np.arange(WAYS), QUERIES)
    looped = min(args.loop_episodes, 200 if args.quick else EPISODES)

    # Logistic regression: the head on all 10,000 episodes, the loop on `looped`, one after the other, twice
    # (quick: once), each figure the better of its rounds.
    head = create_head("logistic")
    batched, loop, batched_cpu, loop_cpu = [], [], [], []
    for _ in range(1 if args.quick else 2):
        started, cpu = time.perf_counter(), time.process_time()
        accuracy = head.score(cache, support, query)
        batched.append(time.perf_counter() - started)
        batched_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        theirs = rfs_loop(cache, support[:looped], query[:looped])
        loop.append(time.perf_counter() - started)
        loop_cpu.append(time.process_time() - cpu)
    batched_s, loop_s = min(batched), min(loop) * EPISODES / looped
    batched_cpu_s, loop_cpu_s = min(batched_cpu), min(loop_cpu) * EPISODES / looped
    ours = logistic_predictions(F.normalize(cache, dim=1), support[:looped], query[:looped]).numpy()
    agreement = float((ours == theirs).mean())
    how = "measured" if looped == EPISODES else f"EXTRAPOLATED from {looped:,} episodes x {EPISODES // looped}"
    print(f"   logistic regression, {EPISODES:,} episodes ({torch.get_num_threads()} torch threads):")
    print_table([["fewshot logistic head (batched, torch)", f"{batched_s:.2f}", f"{batched_cpu_s:.2f}", "measured",
                  f"{100 * accuracy.mean():.2f}"],
                 ["RFS loop (scikit-learn, one fit an episode)", f"{loop_s:.1f}", f"{loop_cpu_s:.1f}", how,
                  f"{100 * (theirs == targets).mean():.2f} (first {looped:,})"]],
                ["method", "wall s / 10,000 episodes", "CPU s (all threads)", "how", "mean accuracy %"])
    print(f"   same predicted label on the first {looped:,} episodes: {100 * agreement:.3f}% of queries; head's mean "
          f"accuracy there {100 * (ours == targets).mean():.2f}%")
    ratio = loop_s / batched_s
    print(f"   speed-up: {ratio:.1f}x in wall time, {loop_cpu_s / batched_cpu_s:.1f}x in CPU time (on a shared machine "
          "CPU time is the steadier figure: wall time includes waiting for a core)")
    report.figure("logistic_batched_s", batched_s)
    report.figure("rfs_loop_s_10k", loop_s)
    report.figure("logistic_batched_cpu_s", batched_cpu_s)
    report.figure("rfs_loop_cpu_s_10k", loop_cpu_s)
    report.figure("rfs_loop_episodes_timed", looped)
    report.figure("agreement", agreement)
    report.target("batched logistic head vs RFS loop (speed-up, wall)", ratio, 50.0, True, "x")
    report.target("batched logistic head vs RFS loop (speed-up, CPU time)", loop_cpu_s / batched_cpu_s, 50.0, True, "x")
    report.target("batched logistic head, 10,000 episodes", batched_s, 30.0, False, " s")

    # SimpleShot vs nearest prototype.
    simpleshot = create_head("simpleshot")
    simpleshot.fit_split(train)
    nearest = create_head("nearest_prototype")
    seconds = interleaved({"simpleshot": lambda: simpleshot.score(cache, support, query),
                           "nearest_prototype": lambda: nearest.score(cache, support, query)},
                          rounds=1 if args.quick else 5, min_seconds=0.0, warmup=1, clock="wall")
    print_table([[name, f"{s:.3f}"] for name, s in seconds.items()], ["head", "wall s / 10,000 episodes (median)"])
    report.figure("simpleshot_s", seconds["simpleshot"])
    report.figure("nearest_prototype_s", seconds["nearest_prototype"])
    report.target("SimpleShot / nearest prototype (time)", seconds["simpleshot"] / seconds["nearest_prototype"],
                  1.2, False, "x")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
