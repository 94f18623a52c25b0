"""The task card: a YAML file that declares one task as data, checked on load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.yaml_values import did_you_mean, read_yaml_mapping
from tasks.metrics import CLASSIFICATION_METRICS, EVALUATE_PREFIX, GENERATION_METRICS, METRICS
from tasks.template import fields_read, parse_template

KINDS = ("classification", "qa", "summarization")
SPLITS = ("train", "validation", "test")
REQUIRED_KEYS = ("name", "version", "kind", "source", "template", "metrics")
# key -> the types its value may have. Every card file is checked against this before any other
# check, so a value of the wrong shape (`splits: [train, test]`) is refused naming its key.
KEY_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "version": (int,), "kind": (str,), "source": (dict,), "template": (str,), "metrics": (list,),
    "include": (str,), "description": (str,), "splits": (dict,), "label_field": (str,), "label_words": (dict, list),
    "target_field": (str,), "primary_metric": (str,), "max_input_tokens": (int,), "max_new_tokens": (int,),
    "license": (str,), "notes": (str,), "validation_from_train": (int,), "train_size": (int,),
    "higher_is_better": (bool,),
}
# keys holding a collection -> the type of each entry (label_words and source have their own, richer checks)
ENTRY_TYPES: dict[str, type] = {"splits": str, "metrics": str}
# `source` key -> the types its value may have: `local` or `hub` says where the data lives; the rest are
# `datasets.load_dataset` arguments of a hub source. Any other key is refused: one dropped unread would load
# other data than the card declares.
SOURCE_KEYS: dict[str, tuple[type, ...]] = {
    "local": (str,), "hub": (str,), "name": (str,), "data_files": (str, list, dict), "revision": (str,),
}
HUB_KEYS = ("name", "data_files", "revision")
DATA_FILES_SHAPES = "text, a list of text or a mapping split -> text or list of text"
KNOWN_KEYS = REQUIRED_KEYS + tuple(key for key in KEY_TYPES if key not in REQUIRED_KEYS)
TYPE_NAMES = {str: "text", int: "an integer", dict: "a mapping", list: "a list", bool: "true or false"}


class TaskCardError(ValueError):
    """A task card that cannot be used; the message names the file, the key and the problem."""

    def __init__(self, path: Path | str, key: str | None, problem: str, *, task_name: str | None = None,
                 origin: Path | str | None = None):
        origin = None if origin is None or Path(origin) == Path(path) else origin
        detail = ", ".join(part for part in (key, origin and f"set in {origin}") if part)
        super().__init__(f"{path}" + (f" [{detail}]" if detail else "") + f": {problem}")
        self.path, self.key, self.problem = path, key, problem
        self.task_name = task_name  # the task the problem is about, where the file does not declare it
        self.origin = origin  # the included card that holds the bad value, where not `path` itself


@dataclass(frozen=True)
class TaskCard:
    """One task as declared in YAML; the README's Tasks section shows every key."""

    path: Path
    name: str
    version: int
    kind: str
    source: dict[str, Any]
    template: str
    metrics: tuple[str, ...]
    primary_metric: str
    splits: dict[str, str] = field(default_factory=dict)
    label_field: str | None = None
    # class value (as it appears in the data) -> words that name the class; first word is canonical
    label_words: dict[Any, tuple[str, ...]] = field(default_factory=dict)
    target_field: str | None = None
    max_input_tokens: int = 256
    max_new_tokens: int = 32
    # rows carved from train (seeded, deterministic) to form validation when a dataset has none
    validation_from_train: int | None = None
    train_size: int | None = None  # default training-data budget (few-shot variants)
    # where a local `evaluate:` metric folder is looked for: beside the card that lists the metrics
    metrics_folder: Path | None = None
    description: str = ""
    license: str = ""

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    @property
    def classes(self) -> list[Any]:
        return list(self.label_words)


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, what="a task card", error=lambda problem: TaskCardError(path, None, problem))


def _describe(value: Any) -> str:
    names = {**TYPE_NAMES, bool: "true/false", float: "a number", type(None): "nothing"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if value is not None else kind


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # YAML reads true/false as bools, which Python counts as integers
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _check_types(path: Path, data: dict[str, Any]) -> None:
    """The value of every known key in one card file has the type KEY_TYPES declares, as do its entries."""
    for key, types in KEY_TYPES.items():
        if key not in data or (data[key] is None and key not in REQUIRED_KEYS):  # null: unset (a variant's way)
            continue
        value = data[key]
        if not _is(value, types):
            expected = " or ".join(TYPE_NAMES[t] for t in types)
            raise TaskCardError(path, key, f"must be {expected}, got {_describe(value)}")
        if key in ENTRY_TYPES:
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for entry, item in entries:
                if not _is(item, (ENTRY_TYPES[key],)):
                    raise TaskCardError(path, key, f"entry {entry!r} must be {TYPE_NAMES[ENTRY_TYPES[key]]}, "
                                        f"got {_describe(item)}")
    if isinstance(data.get("source"), dict):
        _check_source(path, data["source"])


def _check_source(path: Path, source: dict[str, Any]) -> None:
    """Every key under `source` is one SOURCE_KEYS declares, its value of a type it allows."""
    for key, value in source.items():
        if key not in SOURCE_KEYS:
            hint = ("; a hub dataset's configuration is given as `name`" if key == "config"
                    else did_you_mean(key, SOURCE_KEYS))
            raise TaskCardError(path, "source", f"unknown key {key!r}{hint} (known keys: {', '.join(SOURCE_KEYS)})")
        if key == "data_files" and not _is_data_files(value):
            raise TaskCardError(path, "source", f"entry 'data_files' must be {DATA_FILES_SHAPES}, "
                                f"got {_describe(value)}")
        if key != "data_files" and not _is(value, SOURCE_KEYS[key]):
            raise TaskCardError(path, "source", f"entry {key!r} must be text, got {_describe(value)}")


def _is_data_files(value: Any) -> bool:
    if isinstance(value, dict):  # split -> file(s)
        return bool(value) and all(isinstance(split, str) and _names_files(files) for split, files in value.items())
    return _names_files(value)


def _names_files(value: Any) -> bool:
    """A path (or glob, or URL), or a non-empty list of them."""
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(_is(item, (str,)) and item for item in items)


# datasets' common builders of files, where its own full list cannot be imported
FILE_BUILDERS = ("arrow", "audiofolder", "csv", "imagefolder", "json", "pandas", "parquet", "sql", "text",
                 "videofolder", "webdataset", "xml")


def reads_local_files(hub: Any) -> bool:
    """Whether `hub:` names a datasets builder of files (csv, json, parquet...), whose data_files datasets
    reads relative to the current directory; a hub repo's or dataset folder's data_files name files inside it."""
    if not isinstance(hub, str):
        return False
    try:  # imported lazily: heavy, and hub cards only
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES as builders
    except ImportError:  # private to datasets: a release may move it
        builders = FILE_BUILDERS
    return hub in builders


def _anchor(source: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`source` with the relative paths its card declared made absolute against that card's `folder`."""
    source = dict(source)
    if "local" in source:
        source["local"] = str((folder / source["local"]).resolve())
    hub = source.get("hub")
    if isinstance(hub, str) and (folder / hub).is_dir() and not reads_local_files(hub):
        source["hub"] = str((folder / hub).resolve())  # a dataset folder beside the card, not the cwd
    if "data_files" in source and reads_local_files(source.get("hub")):
        source["data_files"] = _anchor_files(source["data_files"], folder)
    return source


def _anchor_files(files: Any, folder: Path) -> Any:
    if isinstance(files, dict):
        return {split: _anchor_files(value, folder) for split, value in files.items()}
    if isinstance(files, list):
        return [_anchor_files(file, folder) for file in files]
    return files if "://" in files else str((folder / files).resolve())  # a URL (https://, hf://) is as given


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into `base` (mappings merge, anything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if key == "source" and isinstance(value, dict) and {"local", "hub"} & set(value):
            merged[key] = value  # a variant naming where its data lives moves it there (local or hub, not both)
        elif key == "label_words":
            merged[key] = value  # the classes are one whole: a variant's may rename or drop the included card's
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, Path]]:
    """The card's keys merged over those of the cards it includes, and for each key the file that
    set it, so a problem found in the merged card names the file that holds the bad value. A null
    value unsets a key an included card set."""
    if path in seen:
        raise TaskCardError(path, "include", f"include cycle: {' -> '.join(map(str, seen + (path,)))}")
    data = _read_yaml(path)
    _check_types(path, data)  # per file, so a bad value names the file that holds it
    parent = data.pop("include", None)
    origins = dict.fromkeys(data, path)
    if parent is not None:
        parent_path = (path.parent / parent).resolve()
        if not parent_path.is_file():
            raise TaskCardError(path, "include", f"{parent!r} names no card file (looked for {parent_path})")
        try:
            base, base_origins = _resolve_includes(parent_path, seen + (path,))
        except TaskCardError as err:  # reported as this card's problem: it is this card that cannot be used
            raise TaskCardError(path, err.key, err.problem, origin=err.origin or err.path) from None
        # A variant's relative data paths stay relative to the card that declared them.
        if "source" in base:
            base["source"] = _anchor(base["source"], parent_path.parent)
        data, origins = _merge(base, data), {**base_origins, **origins}
    unset = [key for key, value in data.items() if value is None and key not in REQUIRED_KEYS]
    for key in unset:
        del data[key], origins[key]
    return data, origins


def _normalise_label_words(path: Path, raw: Any, origin: Path) -> dict[Any, tuple[str, ...]]:
    def fail(problem: str) -> TaskCardError:
        return TaskCardError(path, "label_words", problem, origin=origin)

    if isinstance(raw, list):  # list in class-index order
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or len(raw) < 2:  # one class would score 1.0 whatever the model does
        raise fail("must map two or more classes to their word(s), as a mapping class -> word(s) or a list")
    words: dict[Any, tuple[str, ...]] = {}
    for cls, value in raw.items():
        value = value if isinstance(value, list) else [value]
        if any(isinstance(w, bool) for w in value):
            raise fail(f"class {cls!r}: a label word parsed as a boolean; "
                       "YAML reads unquoted yes/no/on/off as true/false, so quote them")
        if any(isinstance(w, (int, float)) for w in value):
            number = next(w for w in value if isinstance(w, (int, float)))
            raise fail(f"class {cls!r}: a label word parsed as a number; label words are text, so quote it "
                       f"('{number}')")
        if not value or not all(isinstance(w, str) and w.strip() for w in value):
            raise fail(f"class {cls!r} needs one or more non-empty words")
        words[cls] = tuple(value)
    owners: dict[str, Any] = {}
    for cls, value in words.items():  # scored by likelihood, a word shared by two classes cannot tell them apart
        for word in value:
            if owners.setdefault(word.strip(), cls) != cls:
                raise fail(f"{word.strip()!r} is a label word of both class {owners[word.strip()]!r} "
                           f"and class {cls!r}; give each class its own words")
    return words


RANKED_HIGHER_FIRST = ("tables, plots and searches rank a higher primary score as better, so a metric where lower "
                       "is better (wer, perplexity) can only be a secondary metric")


def _check_direction(primary: str, higher_is_better: bool | None, fail) -> None:
    """The primary metric must be one where higher is better. The built-in ones are; of an `evaluate:`
    metric nothing says, so the card says it."""
    if higher_is_better is False:
        raise fail("higher_is_better", RANKED_HIGHER_FIRST)
    if primary.startswith(EVALUATE_PREFIX) and higher_is_better is None:
        raise fail("primary_metric", f"{primary} ranks runs: add `higher_is_better: true` if a higher score is "
                   f"better; {RANKED_HIGHER_FIRST}")


def _check(path: Path, data: dict[str, Any], origins: dict[str, Path]) -> None:
    fail = _failing(path, origins)
    _check_keys(data, fail)
    _check_metrics(data, fail)
    _check_source_and_splits(data, fail)
    _check_answer_keys(data, fail)
    for key in ("max_input_tokens", "max_new_tokens", "validation_from_train", "train_size"):
        if key in data and data[key] < 1:  # an integer: _check_types saw to that
            raise fail(key, f"must be a positive integer, got {data[key]!r}")
    _check_answer_unread(data, _check_template(path, data["template"], origins["template"]), fail)


def _failing(path: Path, origins: dict[str, Path]):
    """The card's error for a key: named with the file that set it, where an included card did."""
    def fail(key: str, problem: str) -> TaskCardError:
        return TaskCardError(path, key, problem, origin=origins.get(key))
    return fail


def _check_keys(data: dict[str, Any], fail) -> None:
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:  # first: a misspelt key is also a missing one
        known = ", ".join(KNOWN_KEYS)
        raise fail(unknown[0], f"unknown key{did_you_mean(unknown[0], KNOWN_KEYS)} (known keys: {known})")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise fail(key, "missing required key")
    if data["kind"] not in KINDS:
        raise fail("kind", f"unknown kind {data['kind']!r} (expected one of {', '.join(KINDS)})")


def _check_metrics(data: dict[str, Any], fail) -> None:
    metrics = data["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise fail("metrics", "must be a non-empty list")
    for metric in metrics:
        if isinstance(metric, str) and metric.startswith(EVALUATE_PREFIX) and len(metric) > len(EVALUATE_PREFIX):
            continue
        if metric not in METRICS:
            raise fail("metrics", f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
        fitting = CLASSIFICATION_METRICS if data["kind"] == "classification" else GENERATION_METRICS
        if metric not in fitting:
            raise fail("metrics", f"metric {metric!r} does not apply to {data['kind']} tasks")
    primary = data.get("primary_metric", metrics[0])
    if primary not in metrics:
        raise fail("primary_metric", f"must be one of the card's metrics ({', '.join(map(str, metrics))}), "
                   f"got {primary!r}")
    _check_direction(primary, data.get("higher_is_better"), fail)


def _check_source_and_splits(data: dict[str, Any], fail) -> None:
    """The source (a local folder or a hub dataset) and the splits the card maps."""
    source = data["source"]
    if not isinstance(source, dict) or len({"local", "hub"} & set(source)) != 1:
        raise fail("source", "must give `local: <folder>` or `hub: <dataset path>`, one of them")
    hub_keys = [key for key in HUB_KEYS if key in source]
    if "local" in source and hub_keys:
        raise fail("source", f"{hub_keys[0]!r} is a key of hub sources; a `local:` folder holds "
                   "<split>.jsonl[.gz] files, named by `splits`")
    if "validation_from_train" in data and "validation" in data.get("splits", {}):
        raise fail("validation_from_train", "a card carving validation from train maps no validation split")
    for split in data.get("splits", {}):
        if split not in SPLITS:
            raise fail("splits", f"unknown split {split!r} (expected {', '.join(SPLITS)})")


def _check_answer_keys(data: dict[str, Any], fail) -> None:
    """Where the answers come from, as the kind needs them."""
    if data["kind"] == "classification":
        for key in ("label_field", "label_words"):
            if key not in data:
                raise fail(key, "required for classification tasks")
        unread = ["target_field", "max_new_tokens"]  # label words are scored, nothing is generated
    else:
        if "target_field" not in data:
            raise fail("target_field", f"required for {data['kind']} tasks")
        unread = ["label_field", "label_words"]
    for key in unread:  # a card that sets it meant another kind, or reads its answers from the wrong field
        if key in data:
            raise fail(key, f"{data['kind']} tasks do not read it: remove it (`{key}: null` unsets one an included "
                       f"card sets), or set the kind that does "
                       f"({'qa or summarization' if key in ('target_field', 'max_new_tokens') else 'classification'})")


def _check_answer_unread(data: dict[str, Any], read: list[str], fail) -> None:
    """A template (reading the fields `read`, as written) must not read the answers: one that pastes
    them into the input scores the model's copying, not its answers."""
    key = "label_field" if data["kind"] == "classification" else "target_field"
    answer = tuple(data[key].split("."))
    for name in read:  # {answers}, {answers[text]} or {answers[text][0]} holds answers.text; {pair[en]} not pair.de
        path = tuple(re.findall(r"[^.\[\]]+", name))
        if path[:len(answer)] == answer or answer[:len(path)] == path:
            raise fail("template", f"reads {{{name}}}, which holds the answers ({key}: {data[key]}): the input "
                       "would hold its own answer")


def _check_template(path: Path, template: str, origin: Path) -> list[str]:
    """A template names the data fields it reads ({sentence}, {answers[text]}); Python's format
    syntax is checked here, when the card loads, not at the first row. Returns those names as written."""
    def fail(problem: str) -> TaskCardError:
        return TaskCardError(path, "template", problem, origin=origin)

    try:
        parsed = parse_template(template)
    except ValueError as err:
        raise fail(f"not a valid template: {err} (write a literal brace as {{{{ or }}}})") from None
    for name in fields_read(parsed):
        if name == "" or name.isdigit():
            raise fail(f"{{{name}}} names no data field; write {{field_name}}")
    for _, name, _, _ in parsed:
        # JSON rows hold text, numbers, lists and mappings: an attribute is a Python method's name
        if name and "." in re.sub(r"\[[^\]]*\]", "", name):
            raise fail(f"{{{name}}} reads an attribute; a template reads fields and their keys or items only: "
                       "{field}, {field[key]}, {field[0]}")
    unknown = sorted({conversion for _, _, _, conversion in parsed} - {None, "r", "s", "a"})
    if unknown:
        raise fail(f"unknown conversion !{unknown[0]} (Python's format knows !r, !s and !a)")
    return [name for _, name, _, _ in parsed if name]


def merged_keys(path: Path | str) -> dict[str, Any]:
    """A card file's keys with those of the cards it includes, as `load_card` reads them."""
    return _resolve_includes(Path(path).resolve())[0]


def load_card(path: Path | str) -> TaskCard:
    """Read, merge (`include`) and check a task card."""
    path = Path(path).resolve()
    data, origins = _resolve_includes(path)
    _check(path, data, origins)
    source = _anchor(data["source"], path.parent)
    label_words = (
        _normalise_label_words(path, data["label_words"], origins["label_words"])
        if data["kind"] == "classification" else {}
    )
    return TaskCard(
        path=path,
        name=str(data["name"]),
        version=data["version"],
        kind=data["kind"],
        source=source,
        template=str(data["template"]),
        metrics=tuple(data["metrics"]),
        primary_metric=data.get("primary_metric", data["metrics"][0]),
        splits={split: data.get("splits", {}).get(split, split) for split in SPLITS},
        label_field=data.get("label_field"),
        label_words=label_words,
        target_field=data.get("target_field"),
        max_input_tokens=data.get("max_input_tokens", TaskCard.max_input_tokens),
        max_new_tokens=data.get("max_new_tokens", TaskCard.max_new_tokens),
        validation_from_train=data.get("validation_from_train"),
        train_size=data.get("train_size"),
        metrics_folder=origins["metrics"].parent,
        description=str(data.get("description", "")),
        license=str(data.get("license", "")),
    )
