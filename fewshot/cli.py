"""The `fewshot` command: thin verbs that parse, call the library, and print.

Every user-facing failure is a FewshotError: one line on stderr, exit code 2, no traceback (`--debug`
shows it). Each verb lives in fewshot/commands/<verb>.py with `add_parser(subparsers)`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from fewshot.errors import FewshotError, environment_error

COMMANDS = ["prepare", "info", "verify", "episodes", "train", "eval", "embed", "table", "compare", "bench", "ablate",
            "curve", "report", "demo", "list"]


class _OneLineErrors:
    """Usage errors on one line like every other error; `fewshot VERB --help` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


class _Parser(_OneLineErrors, argparse.ArgumentParser):
    pass


class _DefaultsShown(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it already names it (or has none worth naming)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == [] or action.default == ""
        if action.option_strings and "default" not in text and not nothing and action.default is not argparse.SUPPRESS:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fewshot",
        description="Few-shot learning benchmark harness: prepare a dataset once, draw fixed episodes, "
                    "train a learner, evaluate with 95% confidence intervals, and table the results.",
        epilog="Run `fewshot VERB --help` for each verb. Start with `fewshot demo`.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in COMMANDS:
        importlib.import_module(f"fewshot.commands.{name}").add_parser(sub)
    for verb_parser in sub.choices.values():  # also verbs that swap in their own parser class (bench)
        if not isinstance(verb_parser, _OneLineErrors):
            verb_parser.__class__ = type(type(verb_parser).__name__, (_OneLineErrors, type(verb_parser)), {})
        verb_parser.formatter_class = _DefaultsShown
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is handled below
    except FewshotError as exc:
        if args.debug:
            raise
        print(f"fewshot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `fewshot table ... | head`: the reader left; say nothing (as Python's docs advise)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command cut off by a pipe
    except (MemoryError, RuntimeError) as exc:  # out of memory (host or GPU) is the environment too
        from fewshot.memory import is_out_of_memory, out_of_memory_message

        if args.debug or not is_out_of_memory(exc):
            raise
        print(f"fewshot: error: {out_of_memory_message(exc)}", file=sys.stderr)
        return FewshotError.exit_code
    except OSError as exc:  # disk full, read-only folder, a file where a folder belongs: one line too
        error = environment_error(exc)
        if error is None or args.debug:
            raise
        print(f"fewshot: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("fewshot: interrupted; finished checkpoints and records are kept (see --resume)", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
