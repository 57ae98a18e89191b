"""examples/quickstart.py runs as the README says and prints the table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "| method | 5w1s | 5w5s |" in done.stdout and "| pixels |" in done.stdout
    assert "embeddings of 8 test images: (8, 64)" in done.stdout
    assert len(list((tmp_path / "work" / "results").glob("*.json"))) == 4
