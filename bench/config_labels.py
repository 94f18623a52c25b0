"""How a run's configuration is named, and what tells two runs' configurations apart: the one spelling
of a config in tables, plots, logs and a search's summary."""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from collections.abc import Iterable
from pathlib import Path

from bench.record import RunRecord


def method_label(method: str, fields: list[tuple[str, object]]) -> str:
    """`method[key=value,...]`, the one spelling of a method configuration in tables and logs."""
    inner = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields)
    return f"{method}[{inner}]" if inner else method


def config_fields(record: RunRecord) -> list[tuple[str, object]]:
    """A run's (setting, value) pairs as its label shows them: method settings, then the learning rate."""
    return shown_settings(record["method"]["settings"], without_effect(record)) + [("lr", record["train"]["lr"])]


def shown_settings(settings: dict, irrelevant: Iterable[str]) -> list[tuple[str, object]]:
    """A config's method settings as labels show them, sorted: those set, less the `irrelevant` ones
    (without effect) and the init text (too long for a label; a table adds it where it tells configs apart)."""
    hidden = {"init_text", *irrelevant}
    return sorted((k, v) for k, v in settings.items() if v is not None and k not in hidden)


def without_effect(record: RunRecord) -> list[str]:
    """The settings the others make irrelevant in a run (a prefix's encoder size without its
    projection): as its record lists them, or, in a record from before records listed them, as
    its method says (which loads the methods: only those records pay for it)."""
    listed, method = record["method"].get("without_effect"), record["method"].get("name")
    if isinstance(listed, list):
        return [name for name in listed if isinstance(name, str)]
    if listed is not None or not isinstance(method, str):  # a hand-edited record: hide nothing
        return []
    return settings_without_effect_in(method, record["method"]["settings"])


def settings_as_run(method: str, settings: dict) -> dict:
    """`settings` with the method's defaults for those not given, as a run's record keeps them (and
    tables label it); as given where the method refuses them or is not registered here."""
    try:
        return json.loads(_resolved(method, json.dumps(settings, sort_keys=True))[0])
    except TypeError:
        return settings


def settings_without_effect_in(method: str, settings: dict) -> list[str]:
    """The settings among `settings` that the others make irrelevant, as `method` says (nothing
    where it refuses them)."""
    try:
        return list(_resolved(method, json.dumps(settings, sort_keys=True))[1])
    except TypeError:
        return []


@functools.cache
def _resolved(method: str, settings: str) -> tuple[str, tuple[str, ...]]:
    """`settings` (as JSON) as `method` takes them, its defaults filled in, and those its others make
    irrelevant; as given, with none, where the method refuses them. Cached: it loads the methods."""
    from bench.methods import MethodError, get_method
    from bench.methods.registry import settings_without_effect

    try:
        taken = get_method(method).settings(**json.loads(settings))
    except (MethodError, TypeError):  # a method not registered here, or settings it no longer takes
        return settings, ()
    return json.dumps(dataclasses.asdict(taken)), tuple(sorted(settings_without_effect(taken)))


def config_label(record: RunRecord) -> str:
    """Method settings and learning rate (the table adds any other training setting its rows differ in)."""
    return method_label(record["method"]["name"], config_fields(record))


def card_of(record: RunRecord) -> str:
    """The card a run's task came from (see card_file)."""
    card = record["task"].get("card")
    return card_file(card) if card else ""


def card_file(path: Path | str) -> str:
    """A task card by folder and file name: the shipped card read on two machines is one card, and a
    user's card that replaces it (same name and version) another."""
    return "/".join(Path(path).parts[-2:])


def model_kind(record: RunRecord) -> str:
    """How the run loaded its model (encoder, causal, seq2seq): one folder loaded as two kinds is two models."""
    return str(record["model"].get("kind", ""))


def precision(record: RunRecord) -> str:
    """Where and in what dtype the run computed ("cpu/float32", "cuda/bfloat16"): runs that differ
    there are not seeds of one config, and their costs (GPU memory against resident memory) do not
    compare. Empty in records that do not say."""
    model = record["model"]
    return f"{model['device']}/{model['dtype']}" if model.get("device") and model.get("dtype") else ""


def init_text(settings: dict) -> str | None:
    """The text a prompt was initialised from (other inits ignore a text they are handed): runs from
    two texts are two configs, though the text is too long for every label (it is shown, shortened,
    only where it tells configs apart)."""
    return settings.get("init_text") if settings.get("init") == "text" else None


def record_init_text(record: RunRecord) -> str | None:
    return init_text(record["method"]["settings"])


def shortened(text: str, limit: int = 24) -> str:
    """A long setting quoted short enough for a label; a cut text ends in a digest of the whole, as
    texts often share their opening words."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}…#{zlib.crc32(text.encode()) & 0xFFFF:04x}"
