"""`spbench`: the command line. Each command's parser and work live with its family, in
bench/commands/ (search's in search/cli.py, predict's in bench/predict.py); here they are gathered,
and errors become messages and exit codes."""

from __future__ import annotations

import argparse
import os
import sys

from bench import predict
from bench.commands import methods, models, records, run, suite, task_cards
from bench.user_warnings import show_warnings_to_users
from tasks.notices import first_line


def build_parser() -> argparse.ArgumentParser:
    from search import cli as search  # it imports Optuna: loaded to parse a command, not with this module

    parser = argparse.ArgumentParser(prog="spbench", description="soft-prompt search and benchmarking")
    sub = parser.add_subparsers(dest="command", required=True)
    for family in (run, models, methods, suite, search, predict, records, task_cards):  # in --help's order
        family.add_parser(sub)
    _name_each_command(parser)
    return parser


def _name_each_command(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser stored in what it parses, so that an argument none of them knows is
    refused with that command's usage: argparse leaves it to the top level, whose usage lists commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                _name_each_command(command)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        words = sys.argv[1:] if argv is None else argv
        before_command = words.index(unknown[0]) < words.index(args.command)  # `spbench --bogus run`
        refuser = parser if before_command else args.command_parser
        refuser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


RESUMABLE = {  # what an interrupted command kept, and how to go on
    "bench": "finished runs are kept: the same command runs the others",
    "search": "finished trials are kept: the same command resumes the study",
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    show_warnings_to_users()
    args = parse(argv)
    try:
        return args.handler(args)
    # every domain error here is a ValueError, but a diverged run's (bench.train.DivergedError)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"spbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `spbench tasks | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail too
        return 0
    except OSError as err:  # a folder it may not write, a full disk: the path and the reason, not a traceback
        path = err.filename2 or err.filename  # a rename into place names the place second
        where = f"{path}: " if path else ""
        reason = err.strerror or first_line(err) or type(err).__name__
        print(f"spbench {args.command}: error: {where}{reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback; what finished is on disk already
        resume = RESUMABLE.get(args.command)
        print(f"spbench {args.command}: interrupted" + (f"; {resume}" if resume else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
