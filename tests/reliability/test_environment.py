"""The environment failing: a full disk, a read-only folder, an output path that is a file, and the user's
own files in an output folder. Each is one line (exit code 2, no traceback), what was half-written is
removed, and the same command (or `--resume`) continues once the cause is fixed.

The full disk is a real one: a small tmpfs mounted for the test (skipped with a message where mounting is
not permitted); the read-only folder is a tmpfs remounted read-only (root ignores permission bits).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from fewshot.data.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_helpers import TINY, TINY_ARGS, error_of, ok  # noqa: E402


def _mount(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    except FileNotFoundError:
        pytest.skip("no `mount` command here: skipping the file-system test")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): skipping")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize(path: Path, size: str) -> None:
    assert _mount(["-o", f"remount,size={size}", str(path)]).returncode == 0


class Disk(type(Path())):
    """A mounted folder, and `fill(leave)`: a filler file leaving about `leave` bytes free."""

    def fill(self, leave: int = 0) -> Path:
        filler = self / "filler"
        stat = os.statvfs(self)
        with open(filler, "ab") as handle:
            handle.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
        return filler


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        yield Disk(disk)


@pytest.fixture
def read_only(tmp_path):
    """An empty read-only folder (a tmpfs remounted read-only)."""
    with tmpfs(tmp_path / "ro", "1m") as folder:
        (folder / "existing").mkdir()
        if _mount(["-o", "remount,ro", str(folder)]).returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only here: skipping")
        yield folder


def files_under(folder: Path, ignore: tuple[str, ...] = ("filler",)) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in ignore)


def log_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def spec(tmp_path: Path, store: Path, out: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text("\n".join([
        'name = "env"', 'config = "protonet"', f'data = "{store}"', f'out = "{out}"', "seeds = [0]",
        "[overrides]", *(f'"{k}" = {json.dumps(v)}' for k, v in TINY.items()),
        "[grid]", '"optim.lr" = [0.001, 0.002]',
        "[episodes]", "ways = [3]", "shots = [1]", "queries = 2", "count = 10", ""]))
    return path


# --- a full disk ------------------------------------------------------------------------------------------


def test_prepare_on_a_full_disk_is_one_line_leaves_nothing_and_reruns(small_disk, capsys):
    out = small_disk / "store"
    args = ["prepare", "synthetic", "--out", out, "--no-progress"]  # about 4.7 MB of images: more than 2 MB
    line = error_of(args, capsys)  # not SIGBUS: the images file is allocated before it is mapped
    assert "no space left" in line and "partial store was removed" in line and "same command again" in line
    assert files_under(small_disk) == []  # no partial store, no temporary folder filling the disk
    resize(small_disk, "16m")
    ok(args, capsys)
    assert not Store(out).verify()["train"]


def test_train_on_a_full_disk_before_its_first_checkpoint_removes_its_run_and_reruns(
        small_disk, tiny_store, capsys):
    small_disk.fill(0)
    run = small_disk / "run"
    args = ["train", "--data", tiny_store, "--out", run, "--quiet", *TINY_ARGS]
    line = error_of(args, capsys)
    assert "no space left" in line and "run the same command again" in line, line
    assert files_under(small_disk) == []  # no run folder that neither a rerun nor --resume would take
    (small_disk / "filler").unlink()
    ok(args, capsys)
    assert log_steps(run) == [1, 2, 3, 4]


def test_train_on_a_disk_that_fills_after_a_checkpoint_resumes(small_disk, tiny_store, trained_run, capsys):
    checkpoint = (trained_run / "checkpoints" / "last.pt").stat().st_size
    run = small_disk / "run"
    # Room for the run's small files and one last.pt, not for the next one beside it (written, then renamed).
    small_disk.fill(int(1.5 * checkpoint) + 16384)
    args = ["train", "--data", tiny_store, "--out", run, "--quiet", *TINY_ARGS]
    line = error_of(args, capsys)
    assert "no space left" in line and "--resume" in line, line
    assert (run / "checkpoints" / "last.pt").exists()
    assert not [p for p in run.rglob(".*.tmp")]  # the half-written checkpoint is gone
    (small_disk / "filler").unlink()
    ok(args + ["--resume"], capsys)
    assert log_steps(run) == [1, 2, 3, 4]  # rows after the checkpoint were replaced, not duplicated
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_eval_and_episodes_on_a_full_disk_leave_no_partial_file(small_disk, tiny_store, trained_run, episodes_file,
                                                                capsys):
    small_disk.fill(0)
    results = small_disk / "results"
    eval_args = ["eval", "--run", trained_run, "--episodes", episodes_file, "--out", results, "--device", "cpu"]
    assert "no space left" in error_of(eval_args, capsys)
    episodes_args = ["episodes", "--data", tiny_store, "--ways", 3, "--shots", 1, "--queries", 2, "--count", 500,
                     "--out", small_disk / "e.npz"]
    assert "no space left" in error_of(episodes_args, capsys)
    assert files_under(small_disk) in ([], ["results"])  # no record, no episode file, no temporary file
    (small_disk / "filler").unlink()
    ok(eval_args, capsys)
    ok(episodes_args, capsys)
    assert len(list(results.glob("*.json"))) == 1 and (small_disk / "e.npz").exists()


def test_ablate_on_a_full_disk_stops_with_one_line_and_picks_up(small_disk, tiny_store, tmp_path, capsys):
    out = small_disk / "ablation"
    path = spec(tmp_path, tiny_store, out)
    small_disk.fill(0)
    line = error_of(["ablate", path, "--device", "cpu"], capsys)
    assert "no space left" in line and "run the same command again" in line and "--resume" not in line, line
    (small_disk / "filler").unlink()
    printed = ok(["ablate", path, "--device", "cpu"], capsys)
    assert "2 of 2 points finished" in printed
    assert len(list((out / "results").glob("*.json"))) == 2


# --- read-only folders and paths that are files -----------------------------------------------------------


def test_every_verb_refuses_a_read_only_output_folder_in_one_line(read_only, tiny_store, trained_run,
                                                                  episodes_file, tmp_path, capsys):
    cases = {
        "prepare": ["prepare", "synthetic", "--out", read_only / "store"],
        "episodes": ["episodes", "--data", tiny_store, "--ways", 3, "--shots", 1, "--queries", 2, "--count", 5,
                     "--out", read_only / "e.npz"],
        "train": ["train", "--data", tiny_store, "--out", read_only / "run", "--quiet", *TINY_ARGS],
        "train into an existing folder": ["train", "--data", tiny_store, "--out", read_only / "existing",
                                          "--no-progress", *TINY_ARGS],
        "eval folder": ["eval", "--run", trained_run, "--episodes", episodes_file, "--out", read_only / "r"],
        "eval file": ["eval", "--run", trained_run, "--episodes", episodes_file, "--out", read_only / "r.json"],
        "bench": ["bench", "protonet", "--data", tiny_store, "--episodes", episodes_file, "--seeds", "0",
                  "--runs", read_only / "runs", "--results", tmp_path / "results", "--device", "cpu", *TINY_ARGS],
        "ablate": ["ablate", spec(tmp_path, tiny_store, read_only / "ablation"), "--device", "cpu"],
        "demo": ["demo", "--out", read_only / "demo"],
        "curve": ["curve", trained_run, "--out", read_only / "curve.png"],
    }
    for name, argv in cases.items():
        line = error_of(argv, capsys)
        assert "read-only" in line or "not writable" in line, (name, line)
    assert files_under(tmp_path / "results") == [] if (tmp_path / "results").exists() else True


def test_every_verb_refuses_an_output_path_that_is_a_file(tiny_store, trained_run, episodes_file, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("the user's own file\n")
    cases = {
        "prepare": ["prepare", "synthetic", "--out", afile],
        "episodes into a folder": ["episodes", "--data", tiny_store, "--out", tmp_path],
        "train": ["train", "--data", tiny_store, "--out", afile, "--quiet", *TINY_ARGS],
        "train under a file": ["train", "--data", tiny_store, "--out", afile / "run", "--quiet", *TINY_ARGS],
        "eval": ["eval", "--run", trained_run, "--episodes", episodes_file, "--out", afile],
        "bench": ["bench", "protonet", "--data", tiny_store, "--episodes", episodes_file, "--seeds", "0",
                  "--runs", afile, "--results", tmp_path / "results", "--device", "cpu", *TINY_ARGS],
        "ablate": ["ablate", spec(tmp_path, tiny_store, afile), "--device", "cpu"],
        "demo": ["demo", "--out", afile],
        "curve": ["curve", trained_run, "--out", tmp_path],
    }
    for name, argv in cases.items():
        print(name, error_of(argv, capsys))
    assert afile.read_text() == "the user's own file\n"


# --- the user's files are never deleted or replaced without --force ---------------------------------------


def test_demo_refuses_a_folder_of_the_users_files_and_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "run").mkdir(parents=True)
    (out / "run" / "notes.txt").write_text("keep me")
    (out / "thesis.tex").write_text("keep me too")
    line = error_of(["demo", "--out", out, "--steps", 2, "--episodes", 5], capsys)
    assert "did not write" in line
    assert files_under(out) == ["run", "run/notes.txt", "thesis.tex"]


def test_ablate_never_replaces_the_users_own_table_without_force(tiny_store, tmp_path, capsys):
    out = tmp_path / "ablation"
    out.mkdir()
    (out / "table.md").write_text("my table\n")
    path = spec(tmp_path, tiny_store, out)
    line = error_of(["ablate", path, "--device", "cpu"], capsys)
    assert "table.md was not written by fewshot ablate" in line and "--force" in line
    assert (out / "table.md").read_text() == "my table\n" and files_under(out) == ["table.md"]
    ok(["ablate", path, "--device", "cpu", "--force"], capsys)
    assert (out / "table.md").read_text().startswith("# Ablation env")
    ok(["ablate", path, "--device", "cpu"], capsys)  # its own table: replaced without --force


def test_eval_never_replaces_a_json_file_that_is_not_a_record_without_force(trained_run, episodes_file, tmp_path,
                                                                           capsys):
    theirs = tmp_path / "settings.json"
    theirs.write_text('{"my": "settings"}\n')
    args = ["eval", "--run", trained_run, "--episodes", episodes_file, "--out", theirs, "--device", "cpu"]
    line = error_of(args, capsys)
    assert "is not a fewshot result record" in line and "--force" in line
    assert theirs.read_text() == '{"my": "settings"}\n'
    ok(args + ["--force"], capsys)
    assert json.loads(theirs.read_text())["format"] == "fewshot-result"
    ok(args, capsys)  # a record may be replaced by a record
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)


@pytest.mark.parametrize("argv", [["list"], ["info", "STORE"]])
def test_output_into_a_closed_pipe_is_no_traceback(argv, tiny_store):
    import sys

    argv = [str(tiny_store) if a == "STORE" else a for a in argv]
    read, write = os.pipe()
    os.close(read)  # the reader (`| head`) is gone before anything is written
    process = subprocess.run([sys.executable, "-m", "fewshot", *argv], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=300)
    os.close(write)
    assert "Traceback" not in process.stderr and "Exception ignored" not in process.stderr, process.stderr
    assert process.returncode in (0, 141)
