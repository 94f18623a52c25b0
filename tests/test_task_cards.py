"""Task cards: the shipped ones load; bad ones are refused naming file, key and problem."""

import collections
import re
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from tasks import TaskCardError, UnknownTask, available_tasks, find_task, load_card, load_task
from tasks.card import KEY_TYPES, KNOWN_KEYS
from tasks.notices import UserNotice
from tasks.registry import SHIPPED_CARDS
from tests.conftest import write_jsonl, write_string_metric

SHIPPED = ("sst2", "squad_v1", "ag_news", "rte", "boolq")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_render_every_split(name):
    task = load_task(name)
    for split in ("train", "validation", "test"):
        examples = task.examples(split, limit=5)
        assert len(examples) == 5 and all(ex.prompt and ex.target for ex in examples)


def test_sst2_and_squad_sizes_match_their_sources():
    assert len(load_task("sst2").rows("validation")) == 872
    squad = load_task("squad_v1")
    assert len(squad.rows("test")) == 10570
    assert len(squad.examples("test", limit=1)[0].references) >= 1


GOOD = {
    "name": "mine", "version": 1, "kind": "classification", "source": "{local: data}",
    "template": "'{text}'", "label_field": "label", "label_words": "{0: ['no'], 1: ['yes']}",
    "metrics": "[accuracy]",
}


def write_card(folder: Path, rows=None, **changes) -> Path:
    keys = {**GOOD, **changes}
    lines = [f"{k}: {v}" for k, v in keys.items() if v is not None]
    (folder / "data").mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        write_jsonl(folder / "data" / f"{split}.jsonl", rows or [{"text": "hi", "label": 0}, {"text": "yo", "label": 1}])
    path = folder / "mine.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_user_card_loads(tmp_path):
    path = write_card(tmp_path)
    assert load_card(path).classes == [0, 1]
    assert "mine" in available_tasks((str(tmp_path),))
    said_higher_is_better = write_card(tmp_path, metrics="['evaluate:matthews_correlation']", higher_is_better="true")
    assert load_card(said_higher_is_better).primary_metric == "evaluate:matthews_correlation"


@pytest.mark.parametrize("changes, key, problem", [
    ({"metrics": None}, "metrics", "missing required key"),
    ({"kind": "regression"}, "kind", "unknown kind"),
    ({"metrics": "[bleu]"}, "metrics", "unknown metric"),
    ({"metrics": "[f1]"}, "metrics", "does not apply"),
    ({"label_words": None}, "label_words", "required for classification"),
    ({"version": "one"}, "version", "integer"),
    ({"label_words": "{0: [no], 1: [yes]}"}, "label_words", "quote them"),
    ({"colour": "red"}, "colour", r"unknown key \(known keys: name, "),
    ({"max_new_token": "8"}, "max_new_token", "unknown key: did you mean 'max_new_tokens'"),
    ({"splits": "[train, test]"}, "splits", "must be a mapping, got a list"),
    ({"splits": "{train: [a, b]}"}, "splits", "entry 'train' must be text"),
    ({"metrics": "[{accuracy: 1}]"}, "metrics", "entry 0 must be text, got a mapping"),
    ({"source": "{local: [data]}"}, "source", "entry 'local' must be text"),
    ({"max_input_tokens": "true"}, "max_input_tokens", "must be an integer, got true/false"),
    ({"train_size": "1.5"}, "train_size", "must be an integer, got a number"),
    ({"name": ""}, "name", "must be text, got nothing"),  # a required key cannot be unset
    ({"label_words": "{0: [negative]}"}, "label_words", "two or more classes"),
    ({"label_words": "{0: [bad], 1: [good, 5]}"}, "label_words",
     r"class 1: a label word parsed as a number; .* quote it \('5'\)"),
    ({"template": "'Text: {text!x}'"}, "template", "unknown conversion !x"),
    ({"template": "'Text: {}'"}, "template", r"\{\} names no data field"),
    ({"template": "'Text: {0}'"}, "template", r"\{0\} names no data field"),
    ({"template": "'Text: {text.upper}'"}, "template", r"\{text.upper\} reads an attribute"),
    ({"template": "'Text: { {text}'"}, "template", "not a valid template"),
    ({"template": "'{text} ({label})'"}, "template", r"reads \{label\}, which holds the answers \(label_field"),
    ({"kind": "qa", "metrics": "[f1]", "label_words": None, "label_field": None, "target_field": "answers.text",
      "template": "'{text} {answers[text][0]}'"}, "template",
     r"reads \{answers\[text\]\[0\]\}, .* \(target_field: answers.text\)"),
    ({"kind": "qa", "metrics": "[f1]", "label_words": None, "label_field": None, "target_field": "answers.text",
      "template": "'{text} {answers}'"}, "template", r"reads \{answers\}, which holds the answers"),
    ({"label_words": "{0: [bad, poor], 1: [good, ' poor']}"}, "label_words",
     "'poor' is a label word of both class 0 and class 1"),
    ({"source": "{hub: some/dir, config: hard}"}, "source",
     "unknown key 'config'; a hub dataset's configuration is given as `name`"),
    ({"source": "{hub: csv, data_file: x.csv}"}, "source",
     r"unknown key 'data_file': did you mean 'data_files'\? \(known keys: local, hub, name, data_files, revision\)"),
    ({"source": "{hub: csv, data_files: 7}"}, "source", "entry 'data_files' must be text, a list of text or a mapping"),
    ({"source": "{hub: csv, data_files: []}"}, "source", r"entry 'data_files' must be .*, got a list \[\]"),
    ({"source": "{hub: csv, data_files: {train: [a.csv, 1]}}"}, "source", "entry 'data_files' must be"),
    ({"source": "{hub: glue, revision: 2}"}, "source", "entry 'revision' must be text, got an integer"),
    ({"source": "{local: data, data_files: x.csv}"}, "source", "'data_files' is a key of hub sources"),
    # every table, plot and search ranks a higher primary score first: a metric to minimise cannot rank
    ({"metrics": "['evaluate:wer', accuracy]"}, "primary_metric",
     "evaluate:wer ranks runs: add `higher_is_better: true` if a higher score is better"),
    ({"higher_is_better": "false"}, "higher_is_better", "a metric where lower is better .* can only be a secondary"),
    ({"higher_is_better": "yes please"}, "higher_is_better", "must be true or false"),
])
def test_bad_card_is_refused_with_key(tmp_path, changes, key, problem):
    path = write_card(tmp_path, **changes)
    with pytest.raises(TaskCardError, match=problem) as err:
        load_card(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_a_template_may_read_a_field_beside_the_answer_under_one_key(tmp_path):
    # WMT's layout: {"translation": {"en": ..., "de": ...}}, the input one language, the target the other
    rows = [{"translation": {"en": "hi", "de": "hallo"}}, {"translation": {"en": "yo", "de": "jo"}}]
    path = write_card(tmp_path, rows, kind="qa", metrics="[f1]", label_words=None, label_field=None,
                      target_field="translation.de", template="'English: {translation[en]}'")
    assert load_card(path).target_field == "translation.de"


@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_every_key_refuses_a_value_of_the_wrong_type(tmp_path, key):
    wrong = next(text for text in ("{x: 1}", "[x]", "7") if not isinstance(yaml.safe_load(text), KEY_TYPES[key]))
    path = write_card(tmp_path, **{key: wrong})
    with pytest.raises(TaskCardError, match="must be") as err:
        load_card(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_wrong_type_in_an_included_card_names_that_card(tmp_path):
    write_card(tmp_path)
    (tmp_path / "variant.yaml").write_text("include: mine.yaml\nname: mine_v2\nsplits: [train]\n")
    with pytest.raises(TaskCardError, match="must be a mapping") as err:
        load_card(tmp_path / "variant.yaml")
    assert err.value.key == "splits" and err.value.path == (tmp_path / "variant.yaml").resolve()


@pytest.mark.parametrize("base_change, key", [
    ({"version": "one"}, "version"),  # found reading the included card itself
    ({"lable_words": "x"}, "lable_words"),  # found in the merged card
    ({"max_input_tokens": 0}, "max_input_tokens"),
])
def test_a_problem_of_an_included_card_names_the_card_used_and_the_one_that_holds_it(tmp_path, base_change, key):
    common, cards = tmp_path / "common", tmp_path / "cards"
    common.mkdir(), cards.mkdir()
    base = write_card(common, **base_change)
    variant = cards / "variant.yaml"
    variant.write_text("include: ../common/mine.yaml\nname: my_variant\n")
    with pytest.raises(TaskCardError) as err:
        find_task("my_variant", tasks_dirs=(str(cards),))
    assert err.value.path == variant.resolve() and err.value.key == key
    assert str(err.value).startswith(f"{variant.resolve()} [{key}, set in {base.resolve()}]: ")


def test_a_part_for_others_to_include_is_not_a_task(tmp_path, recwarn):
    write_card(tmp_path)
    (tmp_path / "mine.yaml").rename(tmp_path / "_base.yaml")
    (tmp_path / "variant.yaml").write_text("include: _base.yaml\nname: mine_v2\n")
    (tmp_path / "_keys.yaml").write_text("max_input_tokens: 64\n")  # no name, kind...: not a card alone
    assert "mine_v2" in available_tasks((str(tmp_path),)) and "mine" not in available_tasks((str(tmp_path),))
    assert not [w for w in recwarn if "left out" in str(w.message)]


def test_a_variant_unsets_an_optional_key_with_null(tmp_path):
    write_card(tmp_path, train_size=1)
    (tmp_path / "variant.yaml").write_text("include: mine.yaml\nname: mine_all\ntrain_size: null\n")
    assert load_card(tmp_path / "mine.yaml").train_size == 1
    assert load_card(tmp_path / "variant.yaml").train_size is None


def test_user_card_overrides_a_shipped_one_by_declared_name(tmp_path):
    """Listing and lookup agree: the card declaring `name: sst2` in the user's folder, whatever its file name."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, version in ((first, 2), (second, 3)):
        folder.mkdir()
        (folder / f"my_sst2_v{version}.yaml").write_text(
            f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nname: sst2\nversion: {version}\n")
    dirs = (str(first), str(second))  # a later folder overrides an earlier one
    listed = available_tasks(dirs)["sst2"]
    assert listed.path == (second / "my_sst2_v3.yaml").resolve() and listed.version == 3
    with pytest.warns(UserWarning, match=f"task sst2: {re.escape(str(listed.path))} replaces the shipped card"):
        assert find_task("sst2", tasks_dirs=dirs).path == listed.path
    assert load_task("sst2", tasks_dirs=dirs).card.version == 3
    assert find_task("sst2", tasks_dirs=(str(first),)).version == 2
    with pytest.raises(UnknownTask, match="my_sst2_v3.yaml declares name 'sst2'"):
        find_task("my_sst2_v3", tasks_dirs=dirs)


@pytest.mark.parametrize("twins", [1, 2])
def test_cards_sharing_a_name_in_a_folder_are_refused(tmp_path, twins):
    write_card(tmp_path)
    for i in range(twins):
        (tmp_path / f"twin{i}.yaml").write_text("include: mine.yaml\n")
    files = ", ".join(["mine.yaml"] + [f"twin{i}.yaml" for i in range(twins)])
    refusal = re.escape(f"'mine' is the name of {twins + 1} cards in the same folder ({files})")
    with pytest.raises(TaskCardError, match=refusal) as err:
        find_task("mine", tasks_dirs=(str(tmp_path),))
    assert err.value.key == "name"
    assert find_task("sst2", tasks_dirs=(str(tmp_path),)).name == "sst2"  # other tasks are not blocked
    with pytest.warns(UserWarning, match=refusal):
        assert "mine" not in available_tasks(tasks_dirs=(str(tmp_path),))


def test_a_later_folder_card_replaces_an_earlier_broken_one(tmp_path):
    broken, fixed = tmp_path / "a", tmp_path / "b"
    broken.mkdir(), fixed.mkdir()
    write_card(broken, metrics="[acc]")
    write_card(fixed)
    dirs = (str(broken), str(fixed))
    with pytest.warns(UserWarning, match="unknown metric 'acc'"):
        assert available_tasks(dirs)["mine"].path.parent == fixed
    assert find_task("mine", tasks_dirs=dirs).path.parent == fixed
    with pytest.raises(TaskCardError, match="unknown metric 'acc'"):  # and a later broken card stops the lookup
        find_task("mine", tasks_dirs=dirs[::-1])


def test_template_field_absent_names_the_row(tmp_path):
    path = write_card(tmp_path, rows=[{"text": "hi", "label": 0}, {"txt": "oops", "label": 1}])
    with pytest.raises(TaskCardError, match=r"field 'text' is absent.*row 1"):
        load_task(str(path)).examples("train")


def test_a_bad_row_is_named_by_its_file_and_line(tmp_path):
    path = write_card(tmp_path)
    train = tmp_path / "data" / "train.jsonl"
    train.write_text('{"text": "hi", "label": 0}\n\n{"text": "yo", "label": 1}\n{"text": "no", "label": 7}\n')
    with pytest.raises(TaskCardError, match=re.escape(f"split 'train' row 2 ({train.resolve()}:4) is not one of")):
        load_task(str(path)).examples("train")


def test_a_bad_row_carved_into_validation_is_named_by_its_line_in_train(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(40)]
    path = write_card(tmp_path, rows=rows, validation_from_train=10)
    task = load_task(str(path))
    carved = task.rows("validation")
    line = next(i for i, row in enumerate(rows, start=1) if row is not None and row["text"] == carved[3]["text"])
    rows[line - 1]["label"] = 7
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    train = (tmp_path / "data" / "train.jsonl").resolve()
    with pytest.raises(TaskCardError, match=re.escape(f"split 'validation' row 3 ({train}:{line}) is not one of")):
        load_task(str(path)).examples("validation")


def test_a_target_field_holding_a_mapping_is_refused_not_pasted_in_as_its_repr(tmp_path):
    path = write_card(tmp_path, rows=[{"text": "hi", "ans": {"text": ["a", "b"]}}], kind="qa", metrics="[f1]",
                      label_field=None, label_words=None, target_field="ans")
    with pytest.raises(TaskCardError, match=r"\[target_field\]: 'ans' holds a mapping, not answer text, in split "
                       r"'train' row 0 \(.*\); name a field inside it, such as ans.text"):
        load_task(str(path)).examples("train")


def test_label_outside_label_words_names_the_row(tmp_path):
    path = write_card(tmp_path, rows=[{"text": "hi", "label": 0}, {"text": "yo", "label": 7}])
    with pytest.raises(TaskCardError, match=r"label 7 of split 'train' row 1"):
        load_task(str(path)).examples("train")


@pytest.mark.parametrize("rows, card, message", [
    ([{"text": "hi", "label": [0]}], {}, r"label \[0\] of split 'train' row 0 \(.*train.jsonl:1\) is not one of"),
    ([{"text": "hi", "label": "1"}], {}, r"label '1' .* is not one of \[0, 1\]; the data's labels are text: quote "
                                         r"the card's label_words keys"),
    ([{"text": "hi", "label": 1}], {"label_words": "{'0': [bad], '1': [good]}"},
     r"label 1 .* is not one of \['0', '1'\]; the data's labels are numbers: leave the card's label_words keys "
     r"unquoted"),
    ([{"text": "hi", "lbl": 0}, {"text": "yo", "label": 1}], {},
     r"\[label_field\]: field 'label' is absent from split 'train' row 0"),
    # a field no row holds is a misspelt name, not the first row's fault
    ([{"text": "hi", "lbl": 0}, {"text": "yo", "lbl": 1}], {},
     r"\[label_field\]: field 'label' is in none of the 2 rows of split 'train': did you mean 'lbl'\? \(their "
     r"fields: lbl, text\)"),
    ([{"text": "hi", "label": 0}], {"template": "'{txt}'"},
     r"\[template\]: field 'txt' is in none of the 1 rows of split 'train': did you mean 'text'\?"),
    ([{"text": "hi", "label": 0}], {"template": "'{text[9]}'"},
     r"\[template\]: cannot fill it from split 'train' row 0"),
])
def test_rows_the_card_cannot_read_are_named(tmp_path, rows, card, message):
    path = write_card(tmp_path, rows=rows, **card)
    with pytest.raises(TaskCardError, match=message):
        load_task(str(path)).examples("train")


@pytest.mark.parametrize("changes, key, problem", [
    ({"kind": "qa", "metrics": "[f1]", "target_field": "text"}, "label_field",
     "qa tasks do not read it: remove it (`label_field: null` unsets one an included card sets), or set the kind "
     "that does (classification)"),
    ({"target_field": "text"}, "target_field", "classification tasks do not read it: remove it (`target_field: null` "
     "unsets one an included card sets), or set the kind that does (qa or summarization)"),
    ({"max_new_tokens": 8}, "max_new_tokens", "classification tasks do not read it"),  # label words are scored
    ({"metrics": "[accuracy, macro_f1]", "primary_metric": "acc"}, "primary_metric",
     "must be one of the card's metrics (accuracy, macro_f1), got 'acc'"),
])
def test_keys_the_kind_does_not_read_and_a_primary_metric_not_listed_are_refused(tmp_path, changes, key, problem):
    with pytest.raises(TaskCardError, match=re.escape(f"[{key}]: {problem}")):
        load_card(write_card(tmp_path, **changes))


def test_validate_lists_every_bad_row_where_a_run_stops_at_the_first(tmp_path, capsys):
    from bench.cli import main
    from bench.commands.task_card_validation import ROW_PROBLEMS_SHOWN

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(40)]
    bad = [3, 7] + list(range(20, 20 + ROW_PROBLEMS_SHOWN))
    for index in bad:
        rows[index]["label"] = 7
    rows[30] = {"txt": "oops", "label": 0}
    path = write_card(tmp_path, rows=rows)
    assert main(["tasks", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    train = (tmp_path / "data" / "train.jsonl").resolve()
    assert f"train          40 rows {len(bad) + 1} bad:" in out
    for index in bad[:ROW_PROBLEMS_SHOWN]:  # each with its own line of the file
        assert f"[label_words] label 7 of split 'train' row {index} ({train}:{index + 1})" in out
    assert f"row {bad[ROW_PROBLEMS_SHOWN]} " not in out and "  and 3 more" in out
    assert f"bad rows or lines (listed above): {len(bad) + 1} in train" in err and "valid\n" not in out
    with pytest.raises(TaskCardError, match="row 3 "):  # a run still stops at the first
        load_task(str(path)).examples("train")


def test_validate_notes_a_train_size_beyond_the_train_split(tmp_path, capsys):
    from bench.cli import main

    path = write_card(tmp_path, train_size=5)  # two rows a split
    with pytest.warns(UserNotice, match=re.escape("[train_size] 5 is more than the 2 rows of the train split; "
                                                  "its runs train on all 2")):
        assert main(["tasks", "validate", str(path)]) == 0
    assert capsys.readouterr().out.endswith("valid\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserNotice)
        assert main(["tasks", "validate", str(write_card(tmp_path, train_size=2))]) == 0


def test_validate_lists_every_line_that_is_no_json_object_and_checks_the_rows_of_the_others(tmp_path, capsys):
    from bench.cli import main

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(20)]
    rows[12]["label"] = 7
    path = write_card(tmp_path, rows=rows, validation_from_train=5)
    train = tmp_path / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[2], lines[9] = '{"text": "x", "label": 0}}', "[1, 2]"
    train.write_text("\n".join(lines) + "\n")
    test = tmp_path / "data" / "test.jsonl"
    lines = test.read_text().splitlines()
    lines[4] = "{oops"
    test.write_text("\n".join(lines) + "\n")
    assert main(["tasks", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    # carved from train: its rows wait for the file to read
    assert (f"  {train}:3: malformed JSON line (Extra data at column 26)\n"
            f"  {train}:10: each line must be a JSON object") in out
    assert f"validation reads {train}, listed above" in out
    # its own file: the rows of the other lines are checked too, each at its own line
    assert "test           19 rows 1 bad, 1 line is no JSON object:" in out
    assert f"  {test}:5: malformed JSON line" in out
    assert f"label 7 of split 'test' row 11 ({test.resolve()}:13) is not one of" in out
    assert "bad rows or lines (listed above): 2 in train, 2 in test" in err
    with pytest.raises(ValueError, match=re.escape(f"{train}:3: malformed JSON line")):  # a run stops at the first
        load_task(str(path)).examples("train")


def test_a_null_field_is_named_not_pasted_in_as_none(tmp_path):
    path = write_card(tmp_path, rows=[{"text": "hi", "label": 0}, {"text": None, "label": 1}])
    with pytest.raises(TaskCardError, match=r"\[template\]: field 'text' is null in split 'train' row 1"):
        load_task(str(path)).examples("train")
    path = write_card(tmp_path, rows=[{"doc": {"text": None}, "label": 0}], template="'{doc[text]}'")
    with pytest.raises(TaskCardError, match=r"\[template\]: field 'doc\[text\]' is null in split 'train' row 0"):
        load_task(str(path)).examples("train")


def test_null_and_blank_gold_answers_are_not_answers(tmp_path):
    rows = [{"text": "q", "answer": ["a", None, " "]}, {"text": "q", "answer": None}, {"text": "q", "answer": [""]}]
    path = write_card(tmp_path, kind="qa", label_words=None, label_field=None, target_field="answer",
                      metrics="[exact_match]", rows=rows)
    task = load_task(str(path))
    assert task.render(task.rows("train")[0], split="train", index=0).references == ("a",)
    for index in (1, 2):
        with pytest.raises(TaskCardError, match=rf"\[target_field\]: no gold answer in split 'train' row {index}"):
            task.render(task.rows("train")[index], split="train", index=index)


def test_yml_cards_and_data_with_a_byte_order_mark_are_read(tmp_path):
    path = write_card(tmp_path)
    path.rename(tmp_path / "mine.yml")
    data = tmp_path / "data" / "train.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    assert "mine" in available_tasks((str(tmp_path),))
    assert [ex.prompt for ex in load_task("mine", tasks_dirs=(str(tmp_path),)).examples("train")] == ["hi", "yo"]


def test_unreadable_cards_and_data_are_named(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(TaskCardError, match="folder.yaml: cannot read it as UTF-8 text"):
        load_card(tmp_path / "folder.yaml")
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TaskCardError, match="latin.yaml: cannot read it as UTF-8 text"):
        load_card(tmp_path / "latin.yaml")
    path = write_card(tmp_path)
    (tmp_path / "data" / "train.jsonl").unlink()
    (tmp_path / "data" / "train.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate-data")
    with pytest.raises(ValueError, match="train.jsonl.gz: unreadable data file"):
        load_task(str(path)).rows("train")


def test_a_validation_file_left_unread_by_carving_is_noticed(tmp_path, recwarn):
    from tasks.notices import UserNotice

    path = write_card(tmp_path, validation_from_train=1)  # beside the data's own validation.jsonl
    with pytest.warns(UserNotice, match=r"mine.yaml \[validation_from_train\]: validation is carved from train, "
                                        r"and .*validation.jsonl is not read"):
        load_task(str(path)).rows("validation")
    (tmp_path / "data" / "validation.jsonl").unlink()
    recwarn.clear()
    load_task(str(path)).rows("validation")
    load_task("samsum").rows("validation")  # its validation file is read, as its train split
    assert not [w for w in recwarn if issubclass(w.category, UserNotice)]


def test_carving_all_of_train_for_validation_is_refused(tmp_path):
    path = write_card(tmp_path, validation_from_train=2, splits="{train: train, test: test}")
    with pytest.raises(TaskCardError, match=r"\[validation_from_train\]: 2 rows carved from a train split of 2"):
        load_task(str(path)).rows("validation")


def test_malformed_line_names_the_line_number(tmp_path):
    path = write_card(tmp_path)
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(Expecting value at column 10\)"):
        load_task(str(path)).rows("train")
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "cut\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(Invalid control character( '\\n')? at "
                                         r"column 14\)"):
        load_task(str(path)).rows("train")


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_line_not_in_utf8_is_named_by_its_number_not_a_byte_offset(tmp_path, gzipped):
    import gzip

    path = write_card(tmp_path)
    data = '{"text": "a", "label": 0}\n{"text": "Z\u00fcrich", "label": 1}\n'.encode("latin-1")
    (tmp_path / "data" / "train.jsonl").unlink()
    if gzipped:
        (tmp_path / "data" / "train.jsonl.gz").write_bytes(gzip.compress(data))
    else:
        (tmp_path / "data" / "train.jsonl").write_bytes(data)
    with pytest.raises(ValueError, match=r"train.jsonl(.gz)?:2: not UTF-8 text \(byte 0xfc at column 12\)"):
        load_task(str(path)).rows("train")


def test_a_split_held_by_both_a_plain_and_a_gzipped_file_is_refused(tmp_path):
    import gzip

    path = write_card(tmp_path)
    plain = tmp_path / "data" / "test.jsonl"
    (tmp_path / "data" / "test.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes() * 3))  # the stale one?
    with pytest.raises(ValueError, match=r"both test.jsonl and test.jsonl.gz hold split file 'test'; keep one"):
        load_task(str(path)).rows("test")


def test_a_field_no_row_holds_is_one_problem_a_split_not_one_a_row(tmp_path, capsys):
    from bench.cli import main

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(30)]
    path = write_card(tmp_path, rows=rows, template="'{txt}'")
    assert main(["tasks", "validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert out.count("[template] field 'txt' is in none of the 30 rows of split") == 3  # a line a split
    assert "did you mean 'text'? (their fields: label, text)" in out and "row 0" not in out


def test_missing_data_file_and_empty_split(tmp_path, capsys):
    from bench.cli import main

    path = write_card(tmp_path)
    (tmp_path / "data" / "test.jsonl").unlink()
    (tmp_path / "data" / "validation.jsonl").write_text("")
    task = load_task(str(path))
    with pytest.raises(TaskCardError, match="split 'test' is missing"):
        task.rows("test")
    with pytest.raises(TaskCardError, match=r"split 'validation' is empty \(.*data/validation.jsonl\)"):
        task.rows("validation")
    assert main(["tasks", "validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert re.search(r"validation refused:\n  .*\[splits\]: split 'validation' is empty", out)  # no line is bad
    assert re.search(r"test +refused:\n  .*\[source\]: data file for split 'test' is missing", out)
    shutil.rmtree(tmp_path / "data")  # no folder: said once, not for each split
    assert main(["tasks", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "refused" not in out and f"mine.yaml [source]: data folder {tmp_path / 'data'} does not exist" in err


def test_an_include_that_names_no_file_is_named_with_the_card_that_includes_it(tmp_path):
    (tmp_path / "variant.yaml").write_text("include: nothere.yaml\nname: v\n")
    with pytest.raises(TaskCardError, match=r"variant.yaml \[include\]: 'nothere.yaml' names no card file"):
        load_card(tmp_path / "variant.yaml")


def test_a_variant_naming_another_source_moves_there_and_one_card_names_one_source(tmp_path):
    write_card(tmp_path)
    (tmp_path / "hub.yaml").write_text("include: mine.yaml\nname: mine_hub\nsource: {hub: glue, name: sst2}\n")
    assert load_card(tmp_path / "hub.yaml").source == {"hub": "glue", "name": "sst2"}
    path = write_card(tmp_path, source="{local: data, hub: glue}")
    with pytest.raises(TaskCardError, match=r"\[source\]: must give .* one of them"):
        load_card(path)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """datasets caches what it generates in a folder of this test's own, not the user's cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def write_csv(path: Path, *texts: str) -> None:
    path.write_text("text,label\n" + "".join(f"{text},{i % 2}\n" for i, text in enumerate(texts)))


def test_hub_data_files_are_the_card_s_own_not_the_current_folder_s(tmp_path, monkeypatch, hub_cache):
    """`hub: csv` reads the files the card names, relative to the card; without data_files it is refused,
    never left to read whatever CSV files lie in the current folder."""
    (tmp_path / "cards").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write_csv(tmp_path / "cards" / "train.csv", "hi", "yo")
    write_csv(tmp_path / "elsewhere" / "stray.csv", "STRAY")
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write_card(tmp_path / "cards", source="{hub: csv, data_files: train.csv}")
    assert [row["text"] for row in load_task(str(path)).rows("train")] == ["hi", "yo"]
    path = write_card(tmp_path / "cards", source="{hub: csv}")
    with pytest.raises(TaskCardError, match=r"\[source\]: `hub: csv` reads data files: name them with `data_files`"):
        load_task(str(path)).rows("train")


def test_a_variant_s_data_files_are_relative_to_the_card_declaring_them(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "variants").mkdir()
    write_card(tmp_path / "base", source="{hub: csv, data_files: {train: train.csv, test: [test.csv]}}")
    (tmp_path / "variants" / "same.yaml").write_text("include: ../base/mine.yaml\nname: same\n")
    (tmp_path / "variants" / "other.yaml").write_text(
        "include: ../base/mine.yaml\nname: other\nsource: {data_files: {test: [mine.csv, https://x.org/t.csv]}}\n")
    base, variants = (tmp_path / "base").resolve(), (tmp_path / "variants").resolve()
    assert load_card(tmp_path / "variants" / "same.yaml").source["data_files"] == {
        "train": str(base / "train.csv"), "test": [str(base / "test.csv")]}
    assert load_card(tmp_path / "variants" / "other.yaml").source["data_files"] == {
        "train": str(base / "train.csv"), "test": [str(variants / "mine.csv"), "https://x.org/t.csv"]}


def test_a_hub_repo_gets_its_revision_and_data_files_as_written(tmp_path, monkeypatch):
    """A hub repo's data_files name files inside the repo, so they are passed on unchanged."""
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or [{"t": 1}])
    path = write_card(tmp_path, source="{hub: someone/data, name: hard, revision: v2, data_files: data/*.parquet}")
    assert load_task(str(path)).rows("train") == [{"t": 1}]
    assert calls == [(("someone/data", "hard"), {"split": "train", "data_files": "data/*.parquet", "revision": "v2"})]


def test_a_hub_dataset_that_cannot_be_reached_says_how_to_fail_at_once(tmp_path, monkeypatch, hub_host):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/data' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    hub_host(reachable=True)  # the host answers, the download does not
    path = write_card(tmp_path, source="{hub: someone/data}")
    with pytest.raises(TaskCardError, match=r"ConnectionError: Couldn't reach .*; without a network, HF_HUB_OFFLINE=1"):
        load_task(str(path)).rows("train")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # already set: no hint
    with pytest.raises(TaskCardError) as err:
        load_task(str(path)).rows("train")
    assert "HF_HUB_OFFLINE" not in str(err.value)


def test_a_hub_dataset_without_a_network_is_looked_for_in_the_cache_alone(tmp_path, monkeypatch, hub_host):
    import datasets
    import huggingface_hub.constants

    offline_when_loaded = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: offline_when_loaded.append(
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)) or [{"t": 1}])
    hub_host(reachable=False)
    path = write_card(tmp_path, source="{hub: someone/data}")
    assert load_task(str(path)).rows("train") == [{"t": 1}]  # a cached dataset loads
    assert offline_when_loaded == [(True, True)] and len(hub_host.tried) == 1  # probed once: no retries after it
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: (_ for _ in ()).throw(
        ConnectionError("Couldn't find 'someone/data' on the Hub")))
    with pytest.raises(TaskCardError, match="huggingface.co cannot be reached from here, so only the local cache "
                                            "was looked in"):
        load_task(str(path)).rows("test")


def test_a_hub_dataset_without_validation_suggests_carving_it_from_train(tmp_path, hub_cache):
    path = write_card(tmp_path, source="{hub: json, data_files: {train: data/train.jsonl, test: data/test.jsonl}}")
    with pytest.raises(TaskCardError, match=r"Unknown split \"validation\".*`validation_from_train: <rows>`"):
        load_task(str(path)).rows("validation")
    path = write_card(tmp_path, source="{hub: json, data_files: {train: data/train.jsonl, test: data/test.jsonl}}",
                      validation_from_train=1)
    assert len(load_task(str(path)).rows("validation")) == 1


def test_loading_hub_data_draws_no_progress_bars(tmp_path, capfd, hub_cache):
    import datasets

    path = write_card(tmp_path, source="{hub: json, data_files: {train: data/train.jsonl}}")
    were_disabled = datasets.are_progress_bars_disabled()
    assert len(load_task(str(path)).rows("train")) == 2
    assert "Generating" not in capfd.readouterr().err
    assert datasets.are_progress_bars_disabled() == were_disabled  # silenced for the load only


def test_include_overrides_keys(tmp_path):
    write_card(tmp_path)
    (tmp_path / "variant.yaml").write_text("include: mine.yaml\nname: mine_v2\ntemplate: 'Say: {text}'\n")
    card = load_card(tmp_path / "variant.yaml")
    assert (card.name, card.template, card.classes) == ("mine_v2", "Say: {text}", [0, 1])
    assert load_task(str(tmp_path / "variant.yaml")).examples("train")[0].prompt == "Say: hi"
    # its label words replace the included card's whole: classes renamed, not added to the old ones
    write_card(tmp_path, rows=[{"text": "hi", "label": "neg"}, {"text": "yo", "label": "pos"}])
    (tmp_path / "renamed.yaml").write_text("include: mine.yaml\nname: mine_v3\n"
                                           "label_words: {neg: [bad], pos: [good]}\n")
    assert load_card(tmp_path / "renamed.yaml").classes == ["neg", "pos"]


def test_training_budget_is_balanced_and_seeded():
    task = load_task("ag_news")
    few = task.training_examples(12, seed=3)
    assert sorted(ex.label for ex in few) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert few == task.training_examples(12, seed=3)
    assert few != task.training_examples(12, seed=4)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_a_budget_that_does_not_divide_over_the_classes_favours_no_class(size):
    """The classes that get one example more are drawn per seed, not always the first ones."""
    task = load_task("ag_news")
    counts = [collections.Counter(ex.label for ex in task.training_examples(size, seed=seed)) for seed in range(12)]
    assert all(sum(c.values()) == size and max(c.values()) - min(c[k] for k in range(4)) <= 1 for c in counts)
    assert all(any(c[label] > size // 4 for c in counts) for label in range(4))


def test_validation_carved_from_train_is_disjoint_and_fixed():
    task = load_task("samsum")
    train, validation = task.rows("train"), task.rows("validation")
    assert (len(train), len(validation)) == (718, 100)
    train_dialogues = {r["dialogue"] for r in train}
    assert not any(r["dialogue"] in train_dialogues for r in validation)
    assert load_task("samsum").rows("validation") == validation


def test_a_broken_card_stops_only_the_lookups_it_answers(tmp_path):
    (tmp_path / "good.yaml").write_text(f"include: {SHIPPED_CARDS / 'sst2.yaml'}\nname: mine\n")
    (tmp_path / "half_done.yaml").write_text("name: draft\nversion: 1\nkind: classification\n")  # no source...
    (tmp_path / "garbled.yaml").write_text("name: [unclosed\n")
    (tmp_path / "latin.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    dirs = (str(tmp_path),)
    assert find_task("mine", tasks_dirs=dirs).name == "mine"
    assert find_task("sst2", tasks_dirs=dirs).name == "sst2"
    for lookup in ("draft", "half_done"):  # by the name it declares, or its file name
        with pytest.raises(TaskCardError, match="half_done.yaml"):
            find_task(lookup, tasks_dirs=dirs)
    with pytest.raises(UnknownTask) as unknown:
        find_task("nothing", tasks_dirs=dirs)
    assert re.match(r"unknown task 'nothing'; known tasks: .*mine.*; a card that cannot be loaded: .*garbled\.yaml",
                    unknown.value.args[0])
    with pytest.warns(UserWarning, match="task card left out: .*half_done.yaml"):
        listed = available_tasks(dirs)
    assert "mine" in listed and "draft" not in listed


def test_a_library_metric_that_cannot_load_stops_the_run_before_its_model_loads(tmp_path, monkeypatch):
    from bench.run_checks import prepare_run
    from bench.run_spec import RunSpec

    path = write_card(tmp_path, metrics=f"[accuracy, 'evaluate:{tmp_path / 'no_such_metric'}']")
    monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("the model loaded first"))
    with pytest.raises(ValueError, match=r"metric evaluate:.*no_such_metric cannot be loaded: no metric folder "):
        prepare_run(RunSpec(task=str(path), model="minilm-l6", method="lora"))
    from bench.cli import main

    assert main(["tasks", "validate", str(path)]) == 2  # validate checks what a run checks


def test_a_bad_row_stops_the_run_before_its_model_loads(tmp_path, monkeypatch):
    """A hub model's download or a GGUF conversion is not waited for to learn that row 1 is bad."""
    from bench.run_checks import prepare_run
    from bench.run_spec import RunSpec

    path = write_card(tmp_path, rows=[{"text": "hi", "label": 0}, {"text": "yo", "label": 7}])
    monkeypatch.setattr("bench.run_checks.load_base_model", lambda *a, **k: pytest.fail("the model loaded first"))
    with pytest.raises(TaskCardError, match="label 7 of split 'train' row 1"):
        prepare_run(RunSpec(task=str(path), model="minilm-l6", method="lora"))


@pytest.mark.parametrize("content, problem", [
    (None, "file not found"), (b"\xff\xfe", "cannot read it as UTF-8 text"),
    (b"name: [x\n", r"not valid YAML: .*\n  in \".*file.yaml\", line 1, column 7"),  # its marks name the file too
    (b"- a list\n", "must be a YAML mapping of keys"),
    (b"name: a\nsub: {x: 1, x: 2}\n", r"key 'x' appears twice \(lines 2 and 2\)"),
    (b"name: a\nname: b\n", r"key 'name' appears twice \(lines 1 and 2\); the second would replace the first"),
])
def test_every_yaml_file_a_user_writes_is_refused_alike(tmp_path, content, problem):
    """Cards, suites, search spaces and run configs share one reader: the same four faults, named with the file."""
    from bench.run_config import read_config
    from bench.suite import SuiteError, load_suite
    from search.space import SpaceError, load_space

    path = tmp_path / "file.yaml"
    if content is not None:
        path.write_bytes(content)
    for read, error in ((load_card, TaskCardError), (load_suite, SuiteError), (load_space, SpaceError),
                        (read_config, ValueError)):
        with pytest.raises(error, match=f"{re.escape(str(path))}.*{problem}"):
            read(path if read is not load_suite else str(path))


def test_yaml_merge_keys_and_anchors_still_load(tmp_path):
    from bench.yaml_values import read_yaml_mapping

    path = tmp_path / "anchors.yaml"
    path.write_text("defaults: &d {steps: 2, lr: 0.1}\nrun:\n  <<: *d\n  lr: 0.3\n")
    assert read_yaml_mapping(path, what="x", error=ValueError)["run"] == {"steps": 2, "lr": 0.3}


def test_settings_are_typed_by_classes_whose_annotations_are_types():
    """A settings class from a module that does not postpone annotations holds types, not their
    names: values are checked against them all the same (an unknown spelling would pass unchecked)."""
    import dataclasses

    from bench.yaml_values import checked_settings

    settings = dataclasses.make_dataclass("Settings", [("size", int, 1), ("rate", float | None, None),
                                                      ("sizes", list[int], None)])
    assert not isinstance(dataclasses.fields(settings)[0].type, str)
    fields = settings.__dataclass_fields__
    assert checked_settings("x", {"size": 4.0, "rate": None}, fields, "setting") == {"size": 4, "rate": None}
    with pytest.raises(ValueError, match="`size` must be an integer, got 2.5"):
        checked_settings("x", {"size": 2.5}, fields, "setting")
    with pytest.raises(ValueError, match="`rate` must be a number, got 'fast'"):
        checked_settings("x", {"rate": "fast"}, fields, "setting")
    assert checked_settings("x", {"sizes": [1, 2]}, fields, "setting") == {"sizes": [1, 2]}  # a list, not an int


def test_task_list_columns_stay_aligned_for_a_long_name(tmp_path, capsys):
    from bench.cli import main

    write_card(tmp_path, name="a_task_with_a_long_name")
    assert main(["tasks", "--tasks-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("a_task_with_a_long_name ") for line in lines)
    assert len({re.match(r"\S+ +", line).end() for line in lines}) == 1  # every second column starts alike
    # a user's card is shown with its file (it may carry a shipped task's name); a shipped one is not
    assert next(line for line in lines if line.startswith("a_task_with_a_long_name ")).endswith(
        f", {(tmp_path / 'mine.yaml').resolve()})")
    assert next(line for line in lines if line.startswith("sst2 ")).endswith("(v1)")


def test_a_local_evaluate_metric_and_hub_folder_are_the_card_s_not_the_current_folder_s(tmp_path, monkeypatch):
    from tasks.metrics import load_library_metrics
    from tests.test_cli import EXACT_STRINGS

    write_string_metric(tmp_path, "exact_strings", EXACT_STRINGS)
    (tmp_path / "elsewhere").mkdir()
    path = write_card(tmp_path, kind="qa", metrics="[f1, 'evaluate:exact_strings']", label_field=None,
                      label_words=None, target_field="text", source="{hub: data}", template="'Label: {label}'")
    monkeypatch.chdir(tmp_path / "elsewhere")
    task = load_task(str(path))
    assert task.card.source["hub"] == str((tmp_path / "data").resolve())
    load_library_metrics(task.card.metrics, folder=task.card.metrics_folder)
    examples = task.examples("test")
    assert task.score(["hi", "no"], examples) == {"f1": 0.5, "evaluate:exact_strings": 0.5}
    (tmp_path / "variants").mkdir()  # a variant elsewhere finds the metric beside the card that lists it
    (tmp_path / "variants" / "v.yaml").write_text("include: ../mine.yaml\nname: mine_v\n")
    variant = load_task(str(tmp_path / "variants" / "v.yaml"))
    assert variant.score(["hi", "no"], examples) == {"f1": 0.5, "evaluate:exact_strings": 0.5}
    # nor is the current folder's metric of that name read for a card that has none beside it
    # (`evaluate.load` would read a bare name as a folder of the working directory)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "o.yaml").write_text(path.read_text().replace("{hub: data}", "{hub: ../data}"))
    other = load_task(str(tmp_path / "other" / "o.yaml"))
    with pytest.raises(TaskCardError, match=r"o.yaml \[metrics\]: metric evaluate:exact_strings cannot be loaded: "
                                            r"no folder .*other/exact_strings beside the card, and no hub module "
                                            r"evaluate-\{metric,comparison,measurement\}/exact_strings"):
        other.check_metrics()


# a QA card's keys over the rows write_card makes: answers are the text, the input its label
QA_CARD = {"kind": "qa", "label_field": None, "label_words": None, "target_field": "text",
           "template": "'Label: {label}'"}


COUNTED = """
matches = sum(p == r for p, r in zip(predictions, references))
return {"n": len(predictions), "matched": matches / len(predictions), "label": "strings"}
"""


def test_an_evaluate_metric_of_several_values_scores_by_the_one_named(tmp_path):
    from tasks.metrics import compute_metrics, library_metric_parts

    write_string_metric(tmp_path, "counted", COUNTED)
    golds = [["hi"], ["yo"], ["hey"], ["no"]]
    assert compute_metrics(["evaluate:counted:matched"], ["hi", "no", "hey", "no"], golds, folder=tmp_path) == {
        "evaluate:counted:matched": 0.75}
    # not the first value (a count of 4): none is named like the metric, so none is guessed
    with pytest.raises(ValueError, match=r"evaluate:counted returned n=4, matched=0.75, label='strings': none "
                                         r"named 'counted'; name the value to score by, as evaluate:counted:KEY"):
        compute_metrics(["evaluate:counted"], ["hi", "no", "hey", "no"], golds, folder=tmp_path)
    with pytest.raises(ValueError, match="'label' is no number there"):
        compute_metrics(["evaluate:counted:label"], ["hi"], [["hi"]], folder=tmp_path)
    assert library_metric_parts("rouge:rougeL") == ("rouge", "rougeL")
    assert library_metric_parts("C:\\metrics\\mine") == ("C:\\metrics\\mine", None)  # a drive's colon
    assert library_metric_parts("org/metric") == ("org/metric", None)
    (tmp_path / "v1:2").mkdir()  # a local metric folder whose name holds a colon is that folder's metric
    assert library_metric_parts("v1:2", tmp_path) == ("v1:2", None)
    assert library_metric_parts("v1:3", tmp_path) == ("v1", "3")


def test_a_metric_whose_result_names_no_score_is_refused_before_a_run_trains(tmp_path, capsys):
    from bench.cli import main
    from tasks.task import load_task

    write_string_metric(tmp_path, "counted", COUNTED)
    qa = QA_CARD
    path = write_card(tmp_path, metrics="[f1, 'evaluate:counted']", **qa)
    with pytest.raises(TaskCardError, match=r"mine.yaml \[metrics\]: metric evaluate:counted returned n=2"):
        load_task(str(path)).check_metrics()
    assert main(["tasks", "validate", str(path)]) == 2  # as `run` and `search` check it, before a model loads
    assert "none named 'counted'" in capsys.readouterr().err
    path = write_card(tmp_path, metrics="[f1, 'evaluate:counted:matched']", **qa)
    load_task(str(path)).check_metrics()  # scores by the value it names


def test_a_metric_failing_on_the_validation_answers_is_named_before_a_run_trains(tmp_path):
    from tasks.notices import UserNotice
    from tasks.task import load_task

    write_string_metric(tmp_path, "picky", "raise ValueError('needs 100 examples')")
    qa = QA_CARD
    path = write_card(tmp_path, metrics="[f1, 'evaluate:picky:matched']", **qa)
    with pytest.warns(UserNotice, match=r"mine.yaml \[metrics\]: scoring 2 validation examples' own answers failed "
                                        r"\(ValueError: metric evaluate:picky:matched cannot score these answers "
                                        r"\(ValueError: needs 100 examples\)\): the run's scoring may fail"):
        load_task(str(path)).check_metrics()


def test_a_metric_refusing_the_kind_of_answers_a_card_gives_is_refused_before_a_run_trains(tmp_path):
    """A metric of strings on a classification card, which gives it class indices: no number of
    examples mends it, so it is no notice but a refusal naming the card, its key and the metric."""
    from tasks.task import load_task

    write_string_metric(tmp_path, "strings_only", "return {'strings_only': 1.0}")
    path = write_card(tmp_path, metrics="[accuracy, 'evaluate:strings_only']")
    with pytest.raises(TaskCardError, match=r"mine.yaml \[metrics\]: metric evaluate:strings_only cannot score these "
                                            r"answers \(ValueError: .*expected format.*\); a classification card's "
                                            r"metric is given class indices"):
        load_task(str(path)).check_metrics()
