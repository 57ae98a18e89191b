"""One writer of tiny ablation specs, for the tests of `fewshot ablate`, its sweeps and its head grids.

Imported with the tests folder put on sys.path (pytest's importlib mode puts no test folder there).
"""
from __future__ import annotations

import json
from pathlib import Path


def write_ablation_spec(path: Path, store: Path, overrides: dict, grid: str, name: str = "grid",
                        extra: str = "") -> Path:
    """A spec over `store`: seed 0, `overrides` as given, `grid` as TOML lines, and 10 3-way 1-shot
    2-query test episodes a file; its out folder is `path.parent / "out"`."""
    lines = "\n".join(f'"{key}" = {json.dumps(value)}' for key, value in overrides.items())
    path.write_text(f'''
name = "{name}"
config = "protonet"
data = "{store}"
out = "{path.parent / 'out'}"
seeds = [0]
{extra}

[overrides]
{lines}

[grid]
{grid}

[episodes]
ways = [3]
shots = [1]
queries = 2
count = 10
''')
    return path
