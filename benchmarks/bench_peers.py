"""End to end against the peers: `fewshot eval` of a Conv-4 ProtoNet on Omniglot vs easyfsl's and learn2learn's loops.

    .venv/bin/python benchmarks/bench_peers.py [--install] [--rounds 2] [--steps 200] [--quick] [--json FILE]

Real Omniglot (../shared/data/omniglot, or --src) is prepared into benchmarks/.peers-work/ (git-ignored),
where a Conv-4 ProtoNet is trained for --steps steps (20-way 5-shot; the figures here are about speed, and
all three tools evaluate these same weights). Then, on 1,000 5-way 5-shot 15-query test episodes, three
whole processes are timed alternately (A, B, C, A, B, C, ...; wall time and the CPU time of the process and
its children, from the operating system):
- fewshot: `python -m fewshot eval --run RUN --episodes episodes/omniglot-vinyals-test-5w5s-15q-1000.npz`
  (embeds the needed images once, scores all episodes over the cached embeddings);
- easyfsl 1.5.0: its own loop (TaskSampler + DataLoader + PrototypicalNetworks, `evaluate_on_one_task` a
  task, as `easyfsl.utils.evaluate` runs it), 1,000 tasks of its own sampling;
- learn2learn 0.2.0: its own pipeline (TaskDataset with NWays, KShots, LoadData, RemapLabels) and the
  ProtoNet evaluation step of its examples (embed the task, mean the supports, negative squared distances).
Both peers read the same prepared store through a torch Dataset (uint8 -> float by torchvision's
ToTensor), use the same weights (loaded with fewshot's run loader, called as an nn.Module), the same number
of torch threads, and the glibc allocator setting fewshot uses (fewshot.device.tune_allocator), so the
lead measured is not the allocator's. Then easyfsl is run once more on fewshot's exact episodes (a batch
sampler that yields the episode file's rows), and its per-episode accuracies are compared with fewshot's.

Peers live in side venvs under benchmarks/ (git-ignored) that see this environment's packages: easyfsl in
.easyfsl-venv (`--install`: pip install --no-deps easyfsl==1.5.0; its TaskSampler calls
`Sampler.__init__(data_source=None)`, which torch 2.14 refuses, hence a one-line shim in the peer process),
learn2learn in .l2l-venv (built by `bench_sampling.py --install-l2l`, or by --install here). A peer that is
not installed is skipped with one line saying so. Target: fewshot >= 10x each peer in wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Report, add_common_args, header, print_table  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".peers-work"
EASYFSL_VENV = HERE / ".easyfsl-venv"
L2L_VENV = HERE / ".l2l-venv"
EPISODES = ROOT / "episodes" / "omniglot-vinyals-test-5w5s-15q-1000.npz"
WAYS, SHOTS, QUERIES = 5, 5, 15
PEER_VENVS = {"easyfsl": EASYFSL_VENV, "learn2learn": L2L_VENV}

# ---------------------------------------------------------------------------------------------------------
# The peer processes (this file run with --peer NAME inside the peer's venv).


def _peer_setup(run: Path, store: Path):
    """(model as an nn.Module, the test split, a torch Dataset of (float image, label)) for a peer process."""
    import numpy as np
    import torch
    from torchvision.transforms import ToTensor

    from fewshot.data.store import Store
    from fewshot.data.torch_dataset import SplitDataset
    from fewshot.device import tune_allocator
    from fewshot.runs import load_run

    tune_allocator()  # the allocator setting fewshot eval runs under

    class Embedder(torch.nn.Module):
        def __init__(self, learner):
            super().__init__()
            self.learner = learner

        def forward(self, images):
            return self.learner.embed(images)

    learner, _, _ = load_run(run, "best", torch.device("cpu"))
    split = Store(store).split("test")

    class Images(SplitDataset):
        def get_labels(self) -> list[int]:  # what easyfsl's TaskSampler asks a dataset for
            return np.asarray(self.split.labels).tolist()

    return Embedder(learner).eval(), split, Images(split, transform=ToTensor())


def _summary(per_episode: list[float]) -> dict:
    import numpy as np

    a = np.asarray(per_episode) * 100
    return {"mean": float(a.mean()), "ci95": float(1.96 * a.std() / np.sqrt(len(a))), "per_episode": per_episode}


def peer_easyfsl(run: Path, store: Path, episodes: int, exact: bool) -> dict:
    import random

    import torch
    from torch.utils.data import DataLoader, Sampler

    Sampler.__init__ = lambda self, data_source=None: None  # shim: easyfsl 1.5.0 passes data_source, torch 2.14 refuses it
    from easyfsl.methods import PrototypicalNetworks
    from easyfsl.samplers import TaskSampler
    from easyfsl.utils import evaluate_on_one_task

    model, split, dataset = _peer_setup(run, store)
    random.seed(0)
    sampler = TaskSampler(dataset, n_way=WAYS, n_shot=SHOTS, n_query=QUERIES, n_tasks=episodes)
    batches = sampler
    if exact:  # fewshot's episodes: per class its supports then its queries, as the collate function expects
        from fewshot.episodes.files import load_episode_file

        support, query = load_episode_file(EPISODES).resolve(split).rows(split.class_offsets)
        batches = [[int(r) for c in range(WAYS) for r in (*support[e, c], *query[e, c])]
                   for e in range(min(episodes, len(support)))]
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=sampler.episodic_collate_fn, num_workers=0)
    few_shot = PrototypicalNetworks(model).eval()
    per_episode = []
    with torch.no_grad():  # easyfsl.utils.evaluate's loop, keeping each task's accuracy
        for support_images, support_labels, query_images, query_labels, _ in loader:
            correct, total = evaluate_on_one_task(few_shot, support_images, support_labels, query_images, query_labels)
            per_episode.append(correct / total)
    return _summary(per_episode)


def peer_learn2learn(run: Path, store: Path, episodes: int) -> dict:
    import contextlib
    import io
    import random

    import numpy as np
    import torch

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import learn2learn as l2l  # imports gym, which prints a notice

    model, split, dataset = _peer_setup(run, store)
    random.seed(0)
    meta = l2l.data.MetaDataset(dataset, labels_to_indices=dataset.labels_to_indices())
    t = l2l.data.transforms
    tasks = l2l.data.TaskDataset(meta, task_transforms=[t.NWays(meta, WAYS), t.KShots(meta, SHOTS + QUERIES),
                                                        t.LoadData(meta), t.RemapLabels(meta)], num_tasks=-1)
    per_episode = []
    per_class = SHOTS + QUERIES
    with torch.no_grad():
        for _ in range(episodes):
            images, labels = tasks.sample()
            order = torch.sort(labels).indices  # the examples' step: group by label, supports first in each
            images, labels = images[order], labels[order]
            embedded = model(images)
            is_support = np.zeros(len(labels), dtype=bool)
            for shot in range(SHOTS):
                is_support[np.arange(WAYS) * per_class + shot] = True
            prototypes = embedded[is_support].reshape(WAYS, SHOTS, -1).mean(dim=1)
            queries, query_labels = embedded[~is_support], labels[~is_support]
            logits = -((queries[:, None, :] - prototypes[None, :, :]) ** 2).sum(dim=2)
            per_episode.append(float((logits.argmax(dim=1) == query_labels).float().mean()))
    return _summary(per_episode)


# ---------------------------------------------------------------------------------------------------------
# Setting up: data, weights, peer venvs.


def _run(command: list[str], **kwargs) -> None:
    print("   $ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run(command, check=True, **kwargs)


def _fewshot(*args: str) -> list[str]:
    return [sys.executable, "-m", "fewshot", *args]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def prepare(src: Path, steps: int) -> tuple[Path, Path]:
    store, run = WORK / "store", WORK / f"run-{steps}"
    WORK.mkdir(exist_ok=True)
    if not (store / "store.json").exists():
        _run(_fewshot("prepare", "omniglot", "--src", str(src), "--out", str(store), "--no-progress"), env=_env())
    if not (run / "run.json").exists() or '"finished"' not in (run / "run.json").read_text():
        resume = ["--resume"] if (run / "checkpoints" / "last.pt").exists() else []
        _run(_fewshot("train", "--config", "protonet-omniglot", "--data", str(store), "--out", str(run), "--device",
                      "cpu", "--no-progress", *resume, f"train.steps={steps}", "episodes.ways=20", "train.val_every=0",
                      "train.checkpoint_every=100"), env=_env())
    return store, run


def install_easyfsl(venv: Path = EASYFSL_VENV) -> None:
    """easyfsl 1.5.0 into `venv`, which sees this environment's packages (torch, torchvision, pandas, ...)."""
    import sysconfig

    if not (venv / "bin" / "python").exists():
        _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    Path(site, "fewshot-main-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "easyfsl==1.5.0"])


def install_peers() -> None:
    """Build the side venvs that are missing; a peer that cannot be installed is said in one line (and skipped
    later by peer_available), not an error: the machine may have no package index."""
    for name, install in (("easyfsl", install_easyfsl), ("learn2learn", _install_l2l)):
        if (PEER_VENVS[name] / "bin" / "python").exists() and peer_available(name) is None:
            continue
        try:
            install()
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"   {name}: could not be installed ({exc}): it will be skipped")


def _install_l2l() -> None:
    from bench_sampling import install_l2l

    install_l2l(L2L_VENV)


def peer_available(name: str) -> str | None:
    """None if the peer runs in its venv, else one line saying why not."""
    python = PEER_VENVS[name] / "bin" / "python"
    if not python.exists():
        how = "--install" if name == "easyfsl" else "--install (or bench_sampling.py --install-l2l)"
        return f"{name}: not installed ({PEER_VENVS[name].name} missing; {how} builds it): skipped"
    module = "easyfsl" if name == "easyfsl" else "learn2learn"
    check = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True, env=_env())
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"{name}: installed in {PEER_VENVS[name].name} but does not import ({last}): skipped"
    return None


# ---------------------------------------------------------------------------------------------------------
# Timing whole processes.


def timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s of the child and its children, stdout) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=list(PEER_VENVS), help=argparse.SUPPRESS)
    parser.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--episodes", type=int, default=1000, help="episodes each tool evaluates (default 1,000)")
    # ../shared/data beside the checkout (or beside the folder of worktrees that holds it)
    shared = next((p / "shared" / "data" / "omniglot" for p in (ROOT.parent, ROOT.parent.parent)
                   if (p / "shared" / "data" / "omniglot").is_dir()), ROOT.parent / "shared" / "data" / "omniglot")
    parser.add_argument("--src", default=str(shared), help="Omniglot archives (default ../shared/data/omniglot)")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the evaluated ProtoNet")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the three processes (default 2)")
    parser.add_argument("--install", action="store_true", help="build the peers' side venvs first")
    add_common_args(parser)
    args = parser.parse_args()
    if args.peer:  # inside a peer's venv: evaluate, print one JSON line
        result = (peer_easyfsl(Path(args.run), Path(args.store), args.episodes, args.exact) if args.peer == "easyfsl"
                  else peer_learn2learn(Path(args.run), Path(args.store), args.episodes))
        print(json.dumps(result))
        return 0

    import torch

    header(f"End to end: fewshot eval vs easyfsl 1.5.0 and learn2learn 0.2.0, Conv-4 ProtoNet, Omniglot "
           f"{WAYS}w{SHOTS}s {QUERIES}q, {args.episodes:,} episodes, whole processes")
    report = Report("peers")
    src = Path(args.src)
    if not (src / "images_evaluation.zip").exists() and not (src / "images_evaluation").is_dir():
        print(f"   real Omniglot not found at {src}: skipped (give --src)")
        report.write(args.json)
        return 0
    if args.install:
        install_peers()
    store, run = prepare(src, args.steps)
    rounds = 1 if args.quick else args.rounds
    episodes = min(args.episodes, 200) if args.quick else args.episodes
    env = _env()
    threads = str(torch.get_num_threads())
    env.setdefault("OMP_NUM_THREADS", threads)  # every tool the same number of torch threads
    record = WORK / "fewshot-record.json"
    commands = {"fewshot": _fewshot("eval", "--run", str(run), "--episodes", str(EPISODES), "--out", str(record),
                                    "--device", "cpu")}
    # For orientation, not the target: fewshot's own bf16 autocast, where the CPU computes bf16 natively.
    bf16_record = WORK / "fewshot-bf16-record.json"
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        commands["fewshot --precision bf16"] = _fewshot("eval", "--run", str(run), "--episodes", str(EPISODES),
                                                        "--out", str(bf16_record), "--device", "cpu",
                                                        "--precision", "bf16")
    if episodes != 1000:
        print(f"   (--quick/--episodes: the peers evaluate {episodes} episodes, fewshot the file's 1,000)")
    for name, venv in PEER_VENVS.items():
        why_not = peer_available(name)
        if why_not:
            print("   " + why_not)
            continue
        commands[name] = [str(venv / "bin" / "python"), str(Path(__file__).resolve()), "--peer", name, "--run",
                          str(run), "--store", str(store), "--episodes", str(episodes)]
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    results: dict[str, dict] = {}
    for r in range(rounds):
        for name, command in commands.items():
            wall, cpu, out = timed(command, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if name.startswith("fewshot"):
                saved = json.loads((record if name == "fewshot" else bf16_record).read_text())
                results[name] = {"mean": saved["mean"], "ci95": saved["ci95"],
                                 "per_episode": saved["per_episode_accuracy"]}
            else:
                results[name] = json.loads(out.strip().splitlines()[-1])
            print(f"   round {r + 1}: {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    rows = [[name, f"{wall[name]:.1f}", f"{cpu[name]:.1f}", f"{wall[name] / wall['fewshot']:.1f}x",
             f"{cpu[name] / cpu['fewshot']:.1f}x", f"{results[name]['mean']:.2f} +- {results[name]['ci95']:.2f}"]
            for name in commands]
    print(f"\n   median of {rounds} alternating rounds, {threads} torch threads, allocator tuned in every process:")
    print_table(rows, ["tool", "wall s", "CPU s", "wall / fewshot", "CPU / fewshot", "accuracy %"])
    report.figure("wall_s", wall)
    report.figure("cpu_s", cpu)
    report.figure("accuracy", {k: [v["mean"], v["ci95"]] for k, v in results.items()})
    if "fewshot --precision bf16" in commands:
        fast = "fewshot --precision bf16"
        same = sum(a == b for a, b in zip(results["fewshot"]["per_episode"], results[fast]["per_episode"]))
        print(f"   bf16 autocast (not the target's fp32): fewshot {wall['fewshot'] / wall[fast]:.2f}x faster; "
              + ", ".join(f"{name} / fewshot bf16 {wall[name] / wall[fast]:.1f}x wall" for name in commands
                          if not name.startswith("fewshot"))
              + f"; {same:,} of {len(results['fewshot']['per_episode']):,} episodes score as in fp32")
        report.figure("bf16_speedup_over_fp32", wall["fewshot"] / wall[fast])
        report.figure("bf16_episodes_as_fp32", same)

    if "easyfsl" in commands:
        exact = commands["easyfsl"][:-2] + ["--episodes", str(episodes), "--exact"]
        _, _, out = timed(exact, env)
        theirs = json.loads(out.strip().splitlines()[-1])["per_episode"]
        ours = results["fewshot"]["per_episode"][:len(theirs)]
        differ = sum(a != round(b, 6) for a, b in zip(ours, theirs))  # records keep 6 decimals
        print(f"   easyfsl on fewshot's exact {len(theirs):,} episodes: per-episode accuracies identical: "
              f"{differ == 0} ({differ} differ)")
        report.figure("easyfsl_exact_episodes_differing", differ)
    print()
    for name in commands:
        if not name.startswith("fewshot"):
            report.target(f"fewshot eval wall-time speed-up over {name} ({episodes:,} episodes)",
                          wall[name] / wall["fewshot"], 10, True, "x")
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
