"""Every verb's help: a description, help on every option with its default, no doubled percent signs."""
from __future__ import annotations

import argparse

import pytest

from fewshot import cli


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("verb", cli.COMMANDS)
def test_help_describes_every_option_and_its_default(verb):
    parser = _verbs()[verb]
    text = parser.format_help()
    assert parser.description, f"{verb} has no description"
    assert "%%" not in text  # a description is not %-formatted: "95%%" would print as it is
    for action in parser._actions:
        assert action.help, f"{verb} {action.option_strings or action.dest} has no help"
        has_default = action.option_strings and action.default not in (None, False, [], "", argparse.SUPPRESS)
        if has_default:
            assert "default" in parser._get_formatter()._get_help_string(action), (verb, action.option_strings)


def test_ablate_takes_no_progress_and_precision(tmp_path):
    args = cli.build_parser().parse_args(["ablate", "spec.toml", "--no-progress", "--precision", "bf16"])
    assert args.no_progress and args.precision == "bf16"


def test_bench_writes_into_a_git_ignored_folder_by_default():
    args = cli.build_parser().parse_args(["bench", "protonet", "--data", "d"])
    assert args.results == "work-runs/results" and args.runs == "work-runs"
    from fewshot.bench import bench
    import inspect

    assert inspect.signature(bench).parameters["results"].default == "work-runs/results"
