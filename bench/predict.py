"""`spbench predict`: a trained prompt (a run's or a search winner's adapter) answering new inputs.

Inputs are rows with the fields of the task's template, as JSON Lines; where the template has one
field, plain lines of text are that field. Each answer is printed as a JSON line: the input row
with `prediction` (a class and its label word, or generated text).
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from bench.record import RunRecord, read_record

EXAMPLES = """examples:
  echo "A gorgeous, witty, seductive movie." | spbench predict results/sst2__minilm-l6/
  spbench predict results/<run_id>/ --input questions.jsonl > answers.jsonl
  spbench predict results/multi/ --task rte --input pairs.jsonl   # a search over several tasks
"""


def add_parser(sub) -> None:
    parser = sub.add_parser("predict", help="answer new inputs with a trained prompt (a run's or a search's best)",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a run folder (record.json + adapter/) or a search's folder "
                        "(best.yaml + best_adapter/)")
    parser.add_argument("--input", type=Path, help="JSON Lines of rows with the template's fields, or plain text "
                        "lines for a one-field template (default: standard input)")
    parser.add_argument("--task", help="which task of a search over several")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")


def find_run(source: Path, task: str | None) -> tuple[RunRecord, Path]:
    """(record, adapter folder) of a run folder, its record.json, or a search folder's winner."""
    folder = source.parent if source.name == "record.json" else source
    if (folder / "record.json").is_file():
        return read_record(folder / "record.json"), folder / "adapter"
    best_file = folder / "best.yaml"
    if not best_file.is_file():
        raise FileNotFoundError(f"{source}: neither a run folder (record.json) nor a search folder (best.yaml)")
    best = yaml.safe_load(best_file.read_text(encoding="utf-8"))
    if not best.get("records"):
        raise ValueError(f"{best_file}: the winner's adapter is not on this machine ({best.get('test')})")
    records = [read_record(Path(path)) for path in best["records"]]
    by_task = {record["task"]["name"]: record for record in records}
    if task is None and len(by_task) > 1:
        raise ValueError(f"{best_file} holds {len(by_task)} tasks ({', '.join(by_task)}): add --task")
    task = task or next(iter(by_task))
    if task not in by_task:
        raise ValueError(f"{best_file}: no task {task!r}; it holds {', '.join(by_task)}")
    return by_task[task], folder / "best_adapter" / task


def template_fields(template: str) -> list[str]:
    """The row fields a template reads, in order ("{a.b}" reads field a)."""
    names = (re.split(r"[.\[]", name)[0] for _, name, _, _ in string.Formatter().parse(template) if name)
    return list(dict.fromkeys(names))


def read_rows(lines: Iterable[str], fields: list[str], where: str) -> list[dict]:
    """Every input row, checked before the model loads: a bad line is named, not met halfway."""
    rows = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where} line {number}: not valid JSON ({err.msg})") from None
        elif len(fields) == 1:
            row = {fields[0]: text}
        else:
            raise ValueError(f"{where} line {number}: expected a JSON object with {', '.join(fields)}")
        missing = [name for name in fields if name not in row]
        if missing:
            raise ValueError(f"{where} line {number}: no {', '.join(missing)} (the template reads "
                             f"{', '.join(fields)})")
        rows.append(row)
    if not rows:
        raise ValueError(f"{where}: no input rows")
    return rows


def run(args) -> int:
    from bench.reload import load_trained, task_of
    from tasks import Example

    record, adapter = find_run(args.source, args.task)
    task = task_of(record, tuple(args.tasks_dir))
    card, fields = task.card, template_fields(task.card.template)
    if args.input is None:
        rows = read_rows(sys.stdin, fields, "standard input")
    else:
        with open(args.input, encoding="utf-8") as stream:
            rows = read_rows(stream, fields, str(args.input))
    tuned = load_trained(record, task, adapter)
    examples = [Example(prompt=card.template.format(**row), target="", references=()) for row in rows]
    for row, prediction in zip(rows, tuned.predict(examples, batch_size=args.batch_size)):
        if card.is_classification:
            label = card.classes[prediction]
            answer = {"prediction": label, "label_word": card.label_words[label][0]}
        else:
            answer = {"prediction": prediction}
        print(json.dumps({**row, **answer}, ensure_ascii=False))
    return 0
