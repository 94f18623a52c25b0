"""YAML files as users write them (task cards, suites, search spaces, run configs) and their values."""

from __future__ import annotations

import dataclasses
import difflib
import io
import types
import typing
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys without a word; in a file a person wrote, the first was
    meant too (two `methods:` blocks, a task listed twice), so a repeated key is an error."""

    def construct_mapping(self, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` is merged by the base class, not a key
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # the base class names that error
                continue
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {lines[key]} and {key_node.start_mark.line + 1}); "
                    "the second would replace the first", key_node.start_mark)
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: Path, *, what: str, error: Callable[[str], Exception]) -> dict[str, Any]:
    """The YAML mapping in `path`. Each way that fails (no such file, not UTF-8 text, not YAML, a key
    given twice, not a mapping) raises `error(problem)`, so each kind of file keeps its own error
    type and prefix."""
    try:
        text = io.StringIO(Path(path).read_text(encoding="utf-8"))
        text.name = str(path)  # YAML's error marks name the file, not "<unicode string>"
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise error("file not found") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder of that name, a file not in UTF-8
        raise error(f"cannot read it as UTF-8 text ({err})") from None
    except yaml.YAMLError as err:
        raise error(f"not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a YAML mapping of keys")
    return data


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (YAML's true and false are ints to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def yaml_number(value: Any) -> int | float | None:
    """`value` as a number, or None when it is none. YAML reads `3e-4` (no dot) as text, so numeric
    text is taken as the number it spells; true/false are not numbers, though Python counts them."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) else value


NUMBER_TYPES = {"int": "an integer", "float": "a number"}


def did_you_mean(name: str, known: Iterable[str], *, after: str = ":") -> str:
    """": did you mean 'steps'?" where `name` is a near miss of a known name (a misspelling), else "";
    `after`: the mark that joins it to what comes before."""
    near = difflib.get_close_matches(str(name), list(known), n=1)
    return f"{after} did you mean {near[0]!r}?" if near else ""


def unknown_name(name: str, known: Iterable[str], *, what: str = "key") -> str:
    """Why a name a person wrote is refused: "unknown key 'stepz': did you mean 'steps'? (known: ...)"."""
    known = list(known)
    listed = f"known: {', '.join(known)}" if known else "there are none"
    return f"unknown {what} {name!r}{did_you_mean(name, known)} ({listed})"


def refuse_repeats(where: str, values: Iterable, *, error: type[Exception] = ValueError) -> None:
    """A value a person listed twice is refused, named: the repeat would plan or run one thing twice."""
    seen = set()
    for value in values:
        if repr(value) in seen:
            raise error(f"{where}: {value!r} is listed twice")
        seen.add(repr(value))


def settings_mapping(where: str, value: Any, *, error: type[Exception] = ValueError) -> dict:
    """An optional mapping (absent or empty in YAML: {}); YAML reads `[a]` as a list, so the shape is checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(f"{where}: must be a mapping, got {value!r}")
    return value


def declared_type(field: dataclasses.Field) -> str:
    """A settings field's type as its source spells it ("int", "float | None"), whether or not its
    module postpones annotations (where they are strings already)."""
    if isinstance(field.type, str):
        return field.type
    union = typing.get_origin(field.type) in (typing.Union, types.UnionType)
    options = typing.get_args(field.type) if union else (field.type,)
    return " | ".join("None" if option is type(None) else getattr(option, "__name__", str(option))
                      for option in options)


def typed_setting(where: str, key: str, value: Any, declared: str, *, error: type[Exception] = ValueError) -> Any:
    """`value` checked against a settings field's declared type ("int", "float | None", "bool"...)."""
    base = declared.split(" |")[0]
    if value is None and "None" in declared:
        return value
    if base == "str":
        if not isinstance(value, str):
            raise error(f"{where}: `{key}` must be text, got {value!r}")
        return value  # which texts are allowed is the owner's check (a method's choices)
    if base not in (*NUMBER_TYPES, "bool"):
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise error(f"{where}: `{key}` must be true or false, got {value!r}")
        return value
    number = yaml_number(value)
    if number is None or (base == "int" and not float(number).is_integer()):
        raise error(f"{where}: `{key}` must be {NUMBER_TYPES[base]}, got {value!r}")
    # a value already of the right type is kept as written: the run id hashes it
    return int(number) if base == "int" and not isinstance(number, int) else number


def checked_settings(where: str, values: Any, fields: dict[str, Any], what: str, *,
                     error: type[Exception] = ValueError, hint=lambda key: "") -> dict[str, Any]:
    """A mapping of settings, each known to `fields` (a dataclass's) and of the type it declares;
    `hint`: what to add where a key is unknown (whose setting it is)."""
    checked = {}
    for key, value in settings_mapping(where, values, error=error).items():
        if key not in fields:
            raise error(f"{where}: {unknown_name(key, sorted(fields), what=what)}{hint(key)}")
        checked[key] = typed_setting(where, key, value, declared_type(fields[key]), error=error)
    return checked
