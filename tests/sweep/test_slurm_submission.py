"""`--executor slurm` without a cluster: fake srun/sbatch/sacct on PATH record what submitit hands Slurm."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

from fewshot.cli import main
from fewshot.sweep.task import run_task
from fewshot.sweep.torchrun import torchrun_command

pytest.importorskip("submitit")

SBATCH = """#!/bin/sh
# Records its arguments and the submission script, answers like sbatch with the next job id.
n=$(cat "$FAKE_SLURM/next")
echo "$@" >> "$FAKE_SLURM/sbatch-args"
cp "$1" "$FAKE_SLURM/submission-$n.sh"
echo $((n + 1)) > "$FAKE_SLURM/next"
echo "Submitted batch job $n"
"""
SACCT = """#!/bin/sh
echo "JobID|State|NodeList"
cat "$FAKE_SLURM/sacct"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "slurm"
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in {"sbatch": SBATCH, "sacct": SACCT, "srun": "#!/bin/sh\nexit 1\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (folder / "next").write_text("4242\n")
    (folder / "sacct").write_text("")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    return folder


def write_spec(path: Path, store: Path) -> Path:
    path.write_text(f'''
name = "gpu-grid"
config = "protonet"
data = "{store}"
out = "{path.parent / 'out'}"
seeds = [0, 1]
overrides = {{ "train.steps" = 3, "train.episodes_per_step" = 2 }}

[grid]
"optim.lr" = [0.001, 0.01]

[episodes]
ways = [3]
shots = [1]
queries = 2
count = 10

[executor]
name = "slurm"
partition = "cpu"                   # the command line's --slurm-partition wins
time = "12:00:00"
setup = ["module load cuda/12.4"]
slurm_extra = {{ constraint = "a100" }}
''')
    return path


def sbatch_lines(script: str) -> dict[str, str]:
    return dict(line[len("#SBATCH --"):].partition("=")[::2] for line in script.splitlines()
                if line.startswith("#SBATCH --"))


def test_the_job_array_slurm_receives(fake_slurm, tiny_store, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.toml", tiny_store)
    argv = ["ablate", str(spec), "--slurm-partition", "gpu", "--gpus-per-job", "2", "--cpus-per-job", "8",
            "--mem", "32G", "--array-parallelism", "3", "--slurm-extra", "account=fewshot-lab",
            "--slurm-extra", "qos=high", "--slurm-extra", "exclusive"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "running 4 now on slurm" in out and "submitted 4 point(s) as job array 4242" in out
    assert "0 of 4 points finished, 4 submitted" in out and "--status" in out
    assert (fake_slurm / "sbatch-args").read_text().split()[0].endswith(".sh")  # one sbatch call: one array
    script = (fake_slurm / "submission-4242.sh").read_text()
    flags = sbatch_lines(script)
    logs = tmp_path / "out" / "runs"
    folder = next(logs.glob("*/submitit"))
    assert flags == {
        "array": "0-3%3", "cpus-per-task": "8", "gpus-per-node": "2", "job-name": "fewshot-gpu-grid",
        "mem": "32GB", "nodes": "1", "ntasks-per-node": "1", "partition": "gpu", "time": "720",
        "signal": "USR2@90", "open-mode": "append", "wckey": "submitit",
        "output": f"{folder}/%A_%a/%A_%a_0_log.out", "error": f"{folder}/%A_%a/%A_%a_0_log.err",
        "account": "fewshot-lab", "qos": "high", "constraint": "a100", "exclusive": ""}
    assert "#SBATCH --exclusive\n" in script
    body = script.split("# setup\n")[1]
    assert body.splitlines()[0] == "module load cuda/12.4"
    assert f"srun --unbuffered --output {folder}/%A_%a/%A_%a_%t_log.out" in body
    assert f"{sys.executable} -u -m submitit.core._submit {folder}/%j" in body

    # Each array task holds one point's job; with 2 GPUs a job trains its point under torchrun.
    pickles = sorted(folder.glob("4242_*/4242_*_submitted.pkl"))
    assert [p.parent.name for p in pickles] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    with open(pickles[0], "rb") as handle:
        (task,) = pickle.load(handle).function.tasks
    assert (task.nproc, task.threads, task.label, task.seed) == (2, 8, "optim.lr=0.001", 0)
    assert torchrun_command(task.nproc, task.folder / "config.json", task.data, task.run_dir, True, "cuda") == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "fewshot",
        "train", "--config", str(task.folder / "config.json"), "--data", str(tiny_store), "--out", task.run_dir,
        "--device", "cuda", "--no-progress", "--resume"]
    submission = json.loads((task.folder / "submission.json").read_text())
    assert (submission["executor"], submission["job_id"]) == ("slurm", "4242_0")
    assert submission["stderr"] == f"{folder}/4242_0/4242_0_0_log.err"

    # --status asks sacct once; a job that ended before it reported is failed with its log's last line.
    (folder / "4242_2").mkdir(exist_ok=True)
    (folder / "4242_2" / "4242_2_0_log.err").write_text("srun: error: node7: task 0: Out Of Memory\n")
    (fake_slurm / "sacct").write_text("4242_0|RUNNING|node3\n4242_1|PENDING|\n4242_2|OUT_OF_MEMORY|node7\n"
                                      "4242_3|CANCELLED by 1000|\n")
    assert main(["ablate", str(spec), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ablation gpu-grid: 4 points: 0 done, 1 running, 2 failed, 1 pending"
    assert lines[1].split()[:5] == ["running", "optim.lr=0.001", "seed", "0", "job"]
    assert "started on Slurm" in lines[1]
    assert lines[2].split() == ["pending", "optim.lr=0.001", "seed", "1", "job", "4242_1:", "queued"]
    assert lines[3].split()[0] == "failed" and "job 4242_2: its job ended (OUT_OF_MEMORY) before it reported" in lines[3]
    assert lines[4].split(None, 1) == ["error:", "srun: error: node7: task 0: Out Of Memory"]
    assert lines[5].split(None, 1) == ["log:", f"{folder}/4242_2/4242_2_0_log.err"]
    assert "job 4242_3: its job ended (CANCELLED by 1000) before it reported" in lines[6]

    # Again: the two live jobs are left alone, the two that ended are submitted anew, as one array.
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "running 2 now on slurm, 2 held by live jobs" in out and "submitted 2 point(s) as job array 4243" in out
    assert sbatch_lines((fake_slurm / "submission-4243.sh").read_text())["array"] == "0-1%2"


def test_without_submitit_slurm_is_a_one_line_error(tiny_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    spec = write_spec(tmp_path / "spec.toml", tiny_store)
    assert main(["ablate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == ("fewshot: error: --executor slurm needs submitit, which is not installed: "
                   "pip install 'fewshot[cluster]'\n")


def test_slurm_needs_a_cluster(tiny_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    spec = write_spec(tmp_path / "spec.toml", tiny_store)
    assert main(["ablate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot: error: --executor slurm: Could not detect \"srun\"") and err.count("\n") == 1
    assert "--executor submitit-local" in err


def test_bench_seeds_as_an_array_collected_by_a_later_command(fake_slurm, tiny_store, tiny_train_overrides, tmp_path,
                                                              capsys, one_torch_thread):
    tiny = {**tiny_train_overrides, "train.val_every": 0, "train.steps": 3, "train.checkpoint_every": 3}
    argv = ["bench", "protonet", "--data", str(tiny_store), "--ways", "3", "--shots", "1", "--seeds", "0,1",
            "--count", "10", "--queries", "2", "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "runs"),
            "--device", "cpu", "--executor", "slurm", "--time", "30", *(f"{k}={v}" for k, v in tiny.items())]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 2 point(s) as job array 4242" in out and "2 seed(s) submitted" in out
    script = (fake_slurm / "submission-4242.sh").read_text()
    assert sbatch_lines(script)["array"] == "0-1%2" and sbatch_lines(script)["job-name"] == "fewshot-bench-protonet"
    assert main([*argv, "--status"]) == 0
    assert [line.split()[:6] for line in capsys.readouterr().out.splitlines()] == [
        ["pending", "protonet", "seed", "0", "job", "4242_0:"], ["pending", "protonet", "seed", "1", "job", "4242_1:"]]

    # What the two nodes would do: run each pickled job's point (here, in this process) ...
    folder = next((tmp_path / "runs").glob("*/submitit"))
    for index in (0, 1):
        with open(folder / f"4242_{index}" / f"4242_{index}_submitted.pkl", "rb") as handle:
            (task,) = pickle.load(handle).function.tasks
        assert task.config["seed"] == index and run_task(task)["ok"]
    # ... then the same command, from anywhere, collects their records: nothing is submitted again.
    (fake_slurm / "sacct").write_text("4242_0|COMPLETED|n1\n4242_1|COMPLETED|n2\n")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("record exists") == 2 and "submitted" not in out
    assert "| method | 3w1s |" in out and "\n| protonet (2 seeds) | **" in out
    assert main([*argv, "--status"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["done", "done"]
