"""Values as users write them in YAML files (suites, search spaces)."""

from __future__ import annotations

from typing import Any


def yaml_number(value: Any) -> int | float | None:
    """`value` as a number, or None when it is none. YAML reads `3e-4` (no dot) as text, so numeric
    text is taken as the number it spells; true/false are not numbers, though Python counts them."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) else value
