"""`spbench predict`: a trained prompt (a run's or a search winner's adapter) answering new inputs.

Inputs are rows with the fields of the task's template, as JSON Lines; where the template has one
field, plain lines of text are that field. Each answer is printed as a JSON line: the input row
with `prediction` (a class, its label word and every class's probability, or generated text), to
standard output or, all at once, to `--output`. A file or a pipe is checked whole before the model
loads; lines typed at a terminal are answered one by one as they come.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.record import (ADAPTER_FOLDER, ADAPTER_RECORD, RunRecord, adapter_beside, read_record, unusable_folder,
                          write_text_atomic)
from bench.yaml_values import read_yaml_mapping
from tasks.notices import UserNotice, counted, first_line
from tasks.template import NullFieldError, fill_template, template_fields

if TYPE_CHECKING:
    from tasks import Example

DESCRIPTION = """Answer new inputs with a trained prompt: the adapter of a run or of a search's
winner, on the model it was trained with. Reads one input a line (plain text,
or JSON objects where the template has several fields) and writes a JSON line
for each: the input's fields and the prediction, with each class's probability
for a classification task."""

EXAMPLES = """examples:
  echo "A gorgeous, witty, seductive movie." | spbench predict results/sst2__minilm-l6/
  spbench predict results/<run_id>/ --input questions.jsonl --output answers.jsonl
  spbench predict results/multi/ --task rte --input pairs.jsonl   # a search over several tasks
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_parser(sub) -> None:
    parser = sub.add_parser("predict", help="answer new inputs with a trained prompt (a run's or a search's best)",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a run folder (record.json + adapter/), a search's folder "
                        "(best.yaml + best_adapter/) or one of its best_adapter/<task> folders")
    parser.add_argument("--input", type=Path, help="JSON Lines of rows with the template's fields, or plain text "
                        "lines for a one-field template (default, or -: standard input; at a terminal, each line is "
                        "answered as it is typed)")
    parser.add_argument("--output", type=Path, help="write the answers to this file, once every one is made "
                        "(default, or -: standard output); inputs typed at a terminal are then answered at Ctrl-D")
    parser.add_argument("--task", help="which task of a search over several")
    parser.add_argument("--batch-size", type=_positive, default=16, help="inputs answered at once (default 16)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.set_defaults(handler=run)


RECORD_KEYS = ("run_id", "task", "model", "method")  # what a prediction reads of a record


def _read(path: Path) -> RunRecord:
    try:
        record = read_record(path)
    except ValueError as err:
        raise ValueError(f"{path}: not a readable run record ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a run record (it is not a JSON object)")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"{path}: not a run record (it has no {missing[0]})")
    return record


def _winner_record(folder: Path, listed: str, task: str) -> RunRecord:
    """A search winner's record: kept in its exported adapter folder, or where best.yaml lists it
    (searches before the adapter kept it; a relative path is read from the current directory, or
    from the directory the results folder is in, where the search ran)."""
    candidates = [folder / "best_adapter" / task / ADAPTER_RECORD, Path(listed), folder.parent.parent / listed]
    for path in candidates:
        if path.is_file():
            return _read(path)
    raise FileNotFoundError(f"{folder / 'best.yaml'}: the record of its {task} winner is not at "
                            f"{', '.join(map(str, candidates))}")


def _from_search(folder: Path, task: str | None) -> tuple[RunRecord, Path]:
    best_file = folder / "best.yaml"
    best = read_yaml_mapping(best_file, what="a search's best.yaml",
                             error=lambda problem: ValueError(f"{best_file}: {problem}"))
    if "records" not in best and isinstance(best.get("test"), str):  # written where the winner did not run
        raise ValueError(f"{best_file}: the winner's adapter is not on this machine ({best['test']})")
    if not isinstance(best.get("records"), list) or not best["records"]:
        raise ValueError(f"{best_file}: not a search's best.yaml (no records of its winner)")
    tasks = best.get("tasks")
    if not isinstance(tasks, list) or len(tasks) != len(best["records"]):
        raise ValueError(f"{best_file}: not a search's best.yaml (no task for each record)")
    if task is None and len(tasks) > 1:
        raise ValueError(f"{best_file} holds {len(tasks)} tasks ({', '.join(tasks)}): add --task")
    task = task or tasks[0]
    if task not in tasks:
        raise ValueError(f"{best_file}: no task {task!r}; it holds {', '.join(tasks)}")
    listed = best["records"][tasks.index(task)]  # both in the order of the search's tasks
    return _winner_record(folder, listed, task), folder / "best_adapter" / task


ANSWERING_FILES = ("best.yaml", "record.json", ADAPTER_RECORD)


def _nearby(folder: Path) -> str:
    """Folders a level or two down that would answer (a search trial's run folder, an exported
    adapter's task folder): offered, up to three, where a person named the folder above them."""
    found = sorted({path.parent for depth in ("*", "*/*") for name in ANSWERING_FILES
                    for path in folder.glob(f"{depth}/{name}")})
    if not found:
        return ""
    listed = " or ".join(str(path) for path in found[:3]) + (f" (of {len(found)})" if len(found) > 3 else "")
    return f"; did you mean {listed}?"


def _failure_reason(folder: Path) -> str:
    try:
        reason = json.loads((folder / "failure.json").read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        reason = None
    return first_line(reason) or "its failure.json does not say why"


def find_run(source: Path, task: str | None) -> tuple[RunRecord, Path]:
    """(record, adapter folder) of a run folder, a search folder's winner, or an exported adapter."""
    folder = source.parent if source.name in ("record.json", "best.yaml", ADAPTER_RECORD) else source
    if not (folder / ADAPTER_RECORD).is_file() and (folder.parent / "record.json").is_file():
        folder = folder.parent  # a run's adapter folder, as its record's artifact_path names it
    if (folder / "best.yaml").is_file():
        return _from_search(folder, task)
    if (folder / "record.json").is_file():
        record, adapter = _read(folder / "record.json"), adapter_beside(folder / "record.json")
    elif (folder / ADAPTER_RECORD).is_file():
        record, adapter = _read(folder / ADAPTER_RECORD), folder
    elif (folder / "failure.json").is_file():
        raise FileNotFoundError(f"{source}: a run that failed, with no model to answer ({_failure_reason(folder)})")
    elif not folder.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    elif (folder / ADAPTER_FOLDER).is_dir():
        raise FileNotFoundError(f"{source}: a run stopped before it finished (an adapter, no record.json): rerun "
                                "its command")
    else:
        raise FileNotFoundError(f"{source}: neither a run folder (record.json) nor a search folder (best.yaml)"
                                f"{_nearby(folder)}")
    if task is not None and task != record["task"]["name"]:
        raise ValueError(f"{source} is a run of task {record['task']['name']!r}, not {task!r}")
    return record, adapter


def parse_row(line: str, number: int, fields: dict[str, bool], where: str) -> dict | None:
    """One input line as a row of the template's fields (None for a blank line); a bad line is named."""
    text = line.strip().removeprefix("\ufeff") if number == 1 else line.strip()  # a byte-order mark
    if not text:
        return None
    _refuse_surrogates(text, f"{where} line {number}")
    if text.startswith("{"):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where} line {number}: not valid JSON ({err.msg})") from None
    elif len(fields) == 1:
        row = {next(iter(fields)): text}
    else:
        raise ValueError(f"{where} line {number}: expected a JSON object with {', '.join(fields)}")
    _refuse_surrogates(json.dumps(row, ensure_ascii=False), f"{where} line {number}")  # "\udce9" in JSON too
    missing = [name for name in fields if name not in row]
    if missing:
        raise ValueError(f"{where} line {number}: no {', '.join(missing)} (the template reads "
                         f"{', '.join(fields)})")
    # a field pasted in whole holds text or a number; an object, a list or null would be pasted
    # into the prompt as Python shows it
    for name in (name for name, whole in fields.items() if whole):
        if not isinstance(row[name], (str, int, float)) or isinstance(row[name], bool):
            raise ValueError(f"{where} line {number}: {name} is {type(row[name]).__name__}, not text")
    return row


def _refuse_surrogates(text: str, where: str) -> None:
    """Refuse a lone surrogate: a byte that was not UTF-8 (standard input hands those on so, see
    `run`), or one a JSON escape wrote. The tokenizer would fail on it with no line to name."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: not UTF-8 text (a byte that is not UTF-8, or a lone surrogate)") from None


def read_inputs(lines: Iterable[str], card, fields: dict[str, bool], where: str) -> list[tuple[dict, Example]]:
    """Every input row with its rendered example, checked before the model loads: a bad line is
    named, not met halfway."""
    return [pair for number, line in enumerate(lines, 1) if (pair := parse_input(line, number, card, fields, where))]


def parse_input(line: str, number: int, card, fields: dict[str, bool], where: str) -> tuple[dict, Example] | None:
    """One input line as its row and the example the card's template renders from it (None for a blank line)."""
    row = parse_row(line, number, fields, where)
    return row and (row, _example(card, row, f"{where} line {number}"))


def _stdin(path: Path | None) -> bool:
    return path is None or str(path) == "-"


def _inputs(path: Path | None, card, fields: dict[str, bool]) -> list[tuple[dict, Example]]:
    if _stdin(path):
        return read_inputs(sys.stdin, card, fields, "standard input")
    try:
        with open(path, encoding="utf-8") as stream:
            return read_inputs(stream, card, fields, str(path))
    except OSError as err:
        raise ValueError(f"--input {path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"--input {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _prompt(template: str, row: dict, where: str) -> str:
    try:
        return fill_template(template, row)
    except NullFieldError as err:
        raise ValueError(f"{where}: {err.args[0]} is null") from None
    except KeyError as err:  # a nested field: {answers[text]} of a row whose answers lack it
        raise ValueError(f"{where}: no {err} in it (the template reads {template!r})") from None
    except (IndexError, TypeError, ValueError) as err:  # {f[9]}, {f:d} on this row
        raise ValueError(f"{where}: cannot fill the template {template!r} from it ({err})") from None


def answers(tuned, card, rows: list[dict], examples: list[Example], batch_size: int) -> list[str]:
    """Each input row with its answer, as a JSON line: a class with its label word and every class's
    probability, or generated text."""
    written = ("prediction", "label_word", "probabilities") if card.is_classification else ("prediction",)
    if replaced := [key for key in written if any(key in row for row in rows)]:
        warnings.warn(f"input field{'s' if len(replaced) > 1 else ''} {', '.join(replaced)}: replaced by the answer's "
                      "in the output (rename it to keep it)", UserNotice, stacklevel=2)
    if not card.is_classification:
        predictions = tuned.predict(examples, batch_size=batch_size)
        return [_json_line({**row, "prediction": text}) for row, text in zip(rows, predictions)]
    scores = tuned.class_scores(examples, batch_size=batch_size)
    lines = []
    for row, best, probabilities in zip(rows, scores.argmax(-1).tolist(), scores.softmax(-1).tolist()):
        label = card.classes[best]
        lines.append(_json_line({**row, "prediction": label, "label_word": card.label_words[label][0],
                                 "probabilities": {c: round(p, 4) for c, p in zip(card.classes, probabilities)}}))
    return lines


def _json_line(answer: dict) -> str:
    return json.dumps(answer, ensure_ascii=False)


def _example(card, row: dict, where: str) -> Example:
    from tasks import Example  # with its data loaders: not at import time, which `spbench --help` waits for

    return Example(prompt=_prompt(card.template, row, where), target="", references=())


def _answer_as_typed(tuned, card, fields: dict[str, bool]) -> None:
    """A person at the terminal: each line is answered as it is entered; a bad one is named and the
    next awaited, so one typo does not end the session."""
    print(f"type inputs, a line each ({', '.join(fields)}); end with Ctrl-D", file=sys.stderr)
    for number, line in enumerate(sys.stdin, 1):
        try:
            parsed = parse_input(line, number, card, fields, "input")
        except ValueError as err:
            print(f"spbench predict: {err}", file=sys.stderr)
            continue
        if parsed:
            row, example = parsed
            [answer] = answers(tuned, card, [row], [example], batch_size=1)
            print(answer, flush=True)


def run(args) -> int:
    from bench.reload import load_trained, task_of

    record, adapter = find_run(args.source, args.task)
    task = task_of(record, tuple(args.tasks_dir))
    card, fields = task.card, template_fields(task.card.template)
    if _stdin(args.input) and isinstance(sys.stdin, io.TextIOWrapper):
        # bytes that are not UTF-8 reach `parse_row` as lone surrogates, which it names by line,
        # rather than ending the read (strict) or reaching the tokenizer (the C locale's default)
        sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
    output = None if args.output is None or str(args.output) == "-" else args.output  # -: standard output
    if output is not None:
        _check_writable(output)
    at_terminal = _stdin(args.input) and sys.stdin.isatty()
    if at_terminal and output is None:
        _answer_as_typed(load_trained(record, task, adapter), card, fields)
        return 0
    if at_terminal:
        print(f"type inputs, a line each ({', '.join(fields)}); end with Ctrl-D to answer them", file=sys.stderr)
    inputs = _inputs(args.input, card, fields)  # all checked before the model loads
    if inputs:
        rows, examples = zip(*inputs)
        lines = answers(load_trained(record, task, adapter), card, list(rows), list(examples), args.batch_size)
    else:  # an empty batch in a pipeline: nothing to answer, which is no failure
        warnings.warn(f"{'standard input' if _stdin(args.input) else args.input}: no input rows, nothing answered",
                      UserNotice, stacklevel=1)
        lines = []
    if output is None:
        for line in lines:
            print(line)
        return 0
    text = "".join(f"{line}\n" for line in lines)
    if output.exists() and not output.is_file():  # /dev/stdout, a named pipe: written to, not replaced
        output.write_text(text, encoding="utf-8")
    else:
        write_text_atomic(text, output)  # all answers or none
    print(f"{counted(len(lines), 'answer')} -> {output}", file=sys.stderr)
    return 0


def _check_writable(path: Path) -> None:
    """Before the model loads: an --output that cannot be written is named before the answers are made."""
    if path.is_dir():
        raise ValueError(f"--output {path}: is a folder (name a file)")
    if path.exists() and not path.is_file():  # /dev/stdout, a named pipe: written to in place
        if not os.access(path, os.W_OK):
            raise ValueError(f"--output {path}: cannot write to it")
        return
    if problem := unusable_folder(path.parent):  # a missing folder is made
        raise ValueError(f"--output {path}: {problem}")
