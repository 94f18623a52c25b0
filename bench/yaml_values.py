"""YAML files as users write them (task cards, suites, search spaces, run configs) and their values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: Path, *, what: str, error: Callable[[str], Exception]) -> dict[str, Any]:
    """The YAML mapping in `path`. Each way that fails (no such file, not UTF-8 text, not YAML, not
    a mapping) raises `error(problem)`, so each kind of file keeps its own error type and prefix."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error("file not found") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder of that name, a file not in UTF-8
        raise error(f"cannot read it as UTF-8 text ({err})") from None
    except yaml.YAMLError as err:
        raise error(f"not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a YAML mapping of keys")
    return data


def yaml_number(value: Any) -> int | float | None:
    """`value` as a number, or None when it is none. YAML reads `3e-4` (no dot) as text, so numeric
    text is taken as the number it spells; true/false are not numbers, though Python counts them."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) else value
