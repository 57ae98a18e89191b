"""Executor options: Slurm's time and memory formats, the spec's [executor] table under the command line."""
from __future__ import annotations

import pytest

from fewshot.errors import FewshotError
from fewshot.sweep.options import ExecutorOptions, from_table, parse_extra, parse_mem_gb, parse_minutes, resolve


def test_slurm_time_formats_in_whole_minutes():
    # sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]
    assert [parse_minutes(t) for t in (240, "90", "1:30", "12:00:00", "0:00:01", "1-12", "1-00:30", "2-00:00:00")] == [
        240, 90, 2, 720, 1, 2160, 1470, 2880]
    for bad in ("abc", "1h", "0", "0:00", -5):
        with pytest.raises(FewshotError, match="--time"):
            parse_minutes(bad)


def test_memory_sizes_in_gigabytes():
    assert [parse_mem_gb(m) for m in (16, 2.5, "32", "32G", "32GB", "64g", "512M", "512MB")] == [
        16.0, 2.5, 32.0, 32.0, 32.0, 64.0, 0.5, 0.5]
    for bad in ("lots", "0", "-1G", "1T"):
        with pytest.raises(FewshotError, match="--mem"):
            parse_mem_gb(bad)


def test_extra_sbatch_options():
    assert parse_extra(["account=lab", "mail-type=END,FAIL", "--exclusive", "comment=a=b"]) == {
        "account": "lab", "mail-type": "END,FAIL", "exclusive": True, "comment": "a=b"}
    with pytest.raises(FewshotError, match="is not KEY=VALUE"):
        parse_extra(["=x"])


def test_the_command_line_overrides_the_spec_table():
    table = from_table({"name": "slurm", "partition": "cpu", "time": "1-00:00:00", "mem": "8G",
                        "slurm_extra": {"constraint": "a100"}, "setup": ["module load cuda"]}, "spec.toml")
    options = resolve(table, {"name": None, "partition": "gpu", "gpus_per_job": 4, "slurm_extra": {"qos": "high"},
                              "mem_gb": None})
    assert options == ExecutorOptions(name="slurm", partition="gpu", gpus_per_job=4, time_minutes=1440, mem_gb=8.0,
                                      slurm_extra={"constraint": "a100", "qos": "high"}, setup=["module load cuda"])
    assert resolve(None, {}) == ExecutorOptions()  # local, one job, 240 minutes


def test_bad_tables_and_combinations():
    with pytest.raises(FewshotError, match="unknown \\[executor\\] key 'gpus'"):
        from_table({"gpus": 2}, "spec.toml")
    with pytest.raises(FewshotError, match="gpus_per_job must be a whole number"):
        from_table({"gpus_per_job": "2"}, "spec.toml")
    with pytest.raises(FewshotError, match="setup must be a list"):
        from_table({"setup": "module load cuda"}, "spec.toml")
    with pytest.raises(FewshotError, match="executor 'pbs' is unknown"):
        resolve({"name": "pbs"}, {})
    with pytest.raises(FewshotError, match="--gpus-per-job N>1 runs a point with torchrun inside a submitted job"):
        resolve(None, {"gpus_per_job": 2})
