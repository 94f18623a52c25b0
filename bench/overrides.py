"""`--set key=value` pairs routed to the settings dataclass that owns the key, with types checked."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from bench.errors import SettingsError
from bench.yaml_values import unknown_name


def _coerce(text: str, annotation: Any, key: str) -> Any:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if type(None) in options and text.lower() in ("none", "null"):
        return None
    for option in (o for o in options if o is not type(None)):
        if option is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            continue
        try:
            return option(text)
        except (TypeError, ValueError):
            continue
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    wanted = " or ".join([names.get(o, getattr(o, "__name__", str(o))) for o in options if o is not type(None)]
                         + (["none"] if type(None) in options else []))
    raise SettingsError(f"--set {key}={text!r}: expected {wanted}")


def split_overrides(pairs: list[str], *owners: type) -> list[dict[str, Any]]:
    """Parse ["lr=0.03", ...] into one dict of typed values per owner dataclass (first owner wins)."""
    fields = [{f.name: typing.get_type_hints(o)[f.name] for f in dataclasses.fields(o)} for o in owners]
    parsed: list[dict[str, Any]] = [{} for _ in owners]
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError(f"--set {pair!r}: expected key=value")
        for owner_fields, values in zip(fields, parsed):
            if key in owner_fields:
                values[key] = _coerce(text.strip(), owner_fields[key], key)
                break
        else:
            known = sorted(k for owner_fields in fields for k in owner_fields)
            raise SettingsError(f"--set {key}: {unknown_name(key, known, what='setting')}")
    return parsed
