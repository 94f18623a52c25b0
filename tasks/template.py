"""Task templates: Python format strings whose fields read a data row ({sentence}, {answers[text]})."""

from __future__ import annotations

import re
import string
from typing import Any


class NullFieldError(ValueError):
    """A template field whose value is null; str.format would paste it in as the text "None"."""


class _NullRefusingFormatter(string.Formatter):
    def get_field(self, field_name, args, kwargs):
        value, key = super().get_field(field_name, args, kwargs)
        if value is None:
            raise NullFieldError(field_name)
        return value, key


_FORMATTER = _NullRefusingFormatter()


def fill_template(template: str, row: dict[str, Any]) -> str:
    """`template.format(**row)`, refusing a null field ({context}, or {answers[text]} reached
    through the row) with NullFieldError naming it."""
    return _FORMATTER.vformat(template, (), row)


def parse_template(template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """(literal text, field, format spec, conversion) for each piece of `template`. Raises
    ValueError on invalid format syntax (a lone brace, say)."""
    return list(string.Formatter().parse(template))


def template_fields(template: str) -> dict[str, bool]:
    """The row fields a template reads (see `fields_read`). Raises ValueError on invalid syntax."""
    return fields_read(parse_template(template))


def fields_read(parsed: list[tuple]) -> dict[str, bool]:
    """The row fields a parsed template reads, in order, each with whether it is pasted in whole
    ("{a}") rather than read into ("{a[text]}"); a positional field reads as "" or a digit."""
    fields: dict[str, bool] = {}
    for _, name, _, _ in parsed:
        if name is not None:
            root = re.split(r"[.\[]", name)[0]
            fields[root] = fields.get(root, True) and name == root
    return fields
