"""`spbench models`: the named models, and whether each is ready offline."""

from __future__ import annotations


def add_parser(sub) -> None:
    sub.add_parser("models", help="list named models and whether each is ready offline").set_defaults(handler=run)


def run(args) -> int:
    from bench.models import MODELS

    width = max([14, *map(len, MODELS)])  # a long name widens its column, not shifts the row
    print(f"{'name':<{width}} {'kind':<8} {'ready offline':<14} description")
    for spec in MODELS.values():
        state = "yes" if spec.is_ready() else ("on first use" if spec.is_installed() else "not installed")
        print(f"{spec.name:<{width}} {spec.kind:<8} {state:<14} {spec.description}")
        if not spec.is_installed():
            print(f"{'':<{width + 25}}install: {spec.install_hint}")
    print("\nAny hub id or local checkpoint folder also works as --model (kind detected from its config).")
    return 0
