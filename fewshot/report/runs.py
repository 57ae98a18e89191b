"""Finding the run folders behind result records (records name theirs in `provenance.run`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from fewshot.config import config_digest

# Run folders are at most this deep under a --runs folder (bench: RUNS/<store id>/<name-digest>).
MAX_DEPTH = 4


def _is_run(folder: Path) -> bool:
    return (folder / "log.csv").is_file()


class RunIndex:
    """Run folders under the given roots, found by the path a record names, by config digest, or by name.

    A record's `provenance.run` is the path its run had when it was evaluated (often relative to another
    machine's working folder); where that path does not exist here, a run under one of `roots` with the
    same resolved config (config digest) or the same folder name stands in for it.
    """

    def __init__(self, roots: list[str | os.PathLike] | None = None) -> None:
        self.roots = [Path(r) for r in roots or []]
        self.runs: list[Path] = []
        for root in self.roots:
            self.runs += self._walk(root)
        self.by_digest: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = {}
        for run in self.runs:
            try:
                self.by_digest.setdefault(config_digest(json.loads((run / "config.json").read_text())), run)
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                pass
            self.by_name.setdefault(run.name, []).append(run)

    @staticmethod
    def _walk(root: Path) -> list[Path]:
        if _is_run(root):
            return [root]
        found = []
        for folder, subfolders, _ in os.walk(root):
            here = Path(folder)
            depth = len(here.relative_to(root).parts)
            if _is_run(here):
                found.append(here)
                subfolders[:] = []  # nothing to find inside a run (checkpoints, tensorboard)
            elif depth >= MAX_DEPTH:
                subfolders[:] = []
            else:
                subfolders.sort()
        return found

    def find(self, record: dict) -> Path | None:
        """The run folder behind `record`, or None where it is not on this machine."""
        named = (record.get("provenance") or {}).get("run")
        if named and _is_run(Path(named)):
            return Path(named)
        config = (record.get("provenance") or {}).get("config")
        if config:
            run = self.by_digest.get(config_digest(config))
            if run is not None:
                return run
        if named:
            same_name = self.by_name.get(Path(named).name, [])
            if len(same_name) == 1:
                return same_name[0]
        return None
