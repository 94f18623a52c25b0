"""`spbench methods`: the methods, their default learning rates and settings."""

from __future__ import annotations

import dataclasses
import textwrap


def add_parser(sub) -> None:
    sub.add_parser("methods", help="list the methods, their default learning rates and settings").set_defaults(
        handler=run)


def run(args) -> int:
    from bench.methods import METHODS

    print(f"{'name':<14} {'default lr':<11} description")
    for method in METHODS.values():  # wrapped to 100 columns, as a narrow terminal shows them
        first = f"{method.name:<14} {method.default_lr:<11g} "
        print(textwrap.fill(method.description, width=100, initial_indent=first, subsequent_indent=" " * 27))
        # as a run resolves them (a prefix's init follows from its projection)
        defaults = [f"{name}={value}" for name, value in dataclasses.asdict(method.settings()).items()]
        if defaults:
            print(textwrap.fill(", ".join(defaults), width=100, initial_indent=f"{'':<27}settings: ",
                                subsequent_indent=" " * 37))
    print("\nSet them with --method NAME --set key=value (a wrong value is refused with the values allowed).")
    return 0
