"""`spbench run`: train and evaluate one configuration."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.record import DEFAULT_RESULTS

DESCRIPTION = """Train one configuration (a task, a model, a method and its settings, or a
search's best.yaml) and score it on validation and test. Its record, and its
adapter (full fine-tuning saves none), go to a folder under --results named by
the run's id, which its task, model, method, settings, seed and training
settings make: the same run again trains again and replaces them."""

EXAMPLES = """examples:
  spbench run --task sst2 --model minilm-l6 --method prompt_tuning --set num_virtual_tokens=20 --set lr=0.03 --steps 200
  spbench run --task squad_v1 --model smollm2-135m --method prompt_tuning --set init=text \\
      --set "init_text=Answer with a short span copied from the context." --steps 20 --eval-size 50
  spbench run --task sst2 --model minilm-l6 --method full_ft --steps 150 --batch-size 32
"""


def add_parser(sub) -> None:
    parser = sub.add_parser("run", help="train and evaluate one configuration",
                            description=DESCRIPTION, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="a YAML config (e.g. a search's best.yaml); flags override it")
    parser.add_argument("--task", help="task name (see `spbench tasks`) or a card path")
    parser.add_argument("--model", help="registry name (see `spbench models`), folder or hub id")
    parser.add_argument("--method", help="method name (see `spbench methods`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a method or training setting, e.g. num_virtual_tokens=20, init=class_labels, lr=0.03")
    parser.add_argument("--steps", type=int, help="training steps (default 200)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument("--seed", type=int, help="seed for data order and initialisation (default 0)")
    parser.add_argument("--eval-size", type=int, help="examples per evaluation split (default: all)")
    parser.add_argument("--train-size", type=int, help="training examples to draw (default: all)")
    parser.add_argument("--model-kind", choices=("encoder", "causal", "seq2seq"),
                        help="override the detected kind of a hub id or folder")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where records go (default results/)")
    parser.add_argument("--tasks-dir", action="append", default=[], help="an extra folder of task cards")
    parser.add_argument("--gradient-checkpointing", action="store_true", default=None,
                        help="recompute activations in the backward pass: far less memory on long inputs, "
                             "same scores (not for prefix_tuning)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _card_name(task: str, tasks_dirs: tuple[str, ...]) -> str:
    """A --task as its card names itself (a config lists names), a card file's declared name among them;
    as given where it finds no card (the run then says why)."""
    from tasks import find_task

    try:
        return find_task(task, tasks_dirs=tasks_dirs).name
    except (ValueError, OSError):  # TaskCardError and UnknownTask are ValueErrors
        return task


def run(args) -> int:
    from bench.run import execute_run
    from bench.run_claim import claim

    spec = _run_spec(args)
    with claim(spec.record_path().parent) as ours:
        if not ours:  # a `bench` of a suite holding this run, or the same `run` in another terminal
            raise ValueError(f"{spec.record_path().parent}: another process is training this run now; its record "
                             "will be there when it ends")
        if spec.record_path().is_file():  # the same config and seed: `bench` would skip it, `run` trains it again
            print(f"{spec.record_path()}: an earlier run of this config and seed; this run overwrites its adapter and "
                  "record")
        record = execute_run(spec)
    _print_run(record)
    print(f"record: {spec.record_path()}")
    return 0


def _run_spec(args):
    """The run `spbench run` asks for: its --config, then flags and --set values over it."""
    from bench.errors import SettingsError
    from bench.methods import get_method
    from bench.overrides import split_overrides
    from bench.run_config import config_file, read_config
    from bench.run_spec import RunSpec
    from bench.train import TrainSettings
    from bench.train.config import watching_no_more_than_scored

    if args.config:
        args.config = config_file(args.config)
    config = read_config(args.config) if args.config else {}
    # the config's card folders, then the command's, which win where both hold a name
    tasks_dirs = (*config.get("tasks_dirs", []), *args.tasks_dir)
    task = args.task or (config.get("tasks") or [None])[0]
    if not args.task and len(config.get("tasks") or []) > 1:
        print(f"{args.config} holds {len(config['tasks'])} tasks ({', '.join(config['tasks'])}): running {task}; "
              "add --task to run another")
    elif args.task and config.get("tasks") and _card_name(args.task, tasks_dirs) not in config["tasks"]:
        print(f"{args.config} was chosen on {', '.join(config['tasks'])}; running it on {args.task}, a task it was "
              "not chosen on")
    model, method_name = args.model or config.get("model"), args.method or config.get("method")
    for flag, value in (("--task", task), ("--model", model), ("--method", method_name)):
        if not value:
            raise ValueError(f"{flag} is required (or give it in --config)")
    method = get_method(method_name)
    flags = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
             "eval_size": args.eval_size, "train_size": args.train_size,
             "gradient_checkpointing": args.gradient_checkpointing}
    set_method, set_train = split_overrides(args.overrides, method.settings_cls, TrainSettings)
    config_method, config_train = _config_settings(args.config, config, method)
    given = {k: v for k, v in flags.items() if v is not None}
    method_values, train_values = {**config_method, **set_method}, {**config_train, **set_train, **given}
    # never watch more than is scored, unless told to: by --set, or by a config that --eval-size does not override
    watched_as_told = "monitor_size" in set_train or ("monitor_size" in config_train and args.eval_size is None)
    from_config = {*config_method.keys() - set_method.keys(), *config_train.keys() - set_train.keys() - given.keys()}
    try:
        method.settings(**method_values)  # refused here, where the file a value came from can be named
        train = TrainSettings(**watching_no_more_than_scored(train_values, as_told=watched_as_told))
    except SettingsError as err:
        if any(re.search(rf"\b{re.escape(key)}=", str(err)) for key in from_config):
            raise type(err)(f"--config {args.config}: {err}") from None
        raise
    return RunSpec(task=task, model=model, method=method_name, method_settings=method_values,
                   train=train, tasks_dirs=tasks_dirs,
                   results_dir=args.results, model_kind=args.model_kind, progress=not args.quiet)


def _config_settings(path: Path, config: dict, method) -> tuple[dict, dict]:
    """The config's method settings and training settings, as they apply to `method`."""
    from bench.run_config import config_values
    from bench.train import TrainSettings
    from bench.yaml_values import settings_mapping

    if not config:
        return {}, {}
    train = config_values(path, config, "train", TrainSettings)
    if config.get("method") in (None, method.name):
        return config_values(path, config, "settings", method.settings_cls), train
    # written for another method: its settings and learning rate mean nothing to this one
    settings_mapping(f"--config {path} settings", config.get("settings"))  # refused still where malformed
    dropped_lr = train.pop("lr", None)
    left_out = [what for what, present in (("settings", config.get("settings")),
                                           ("learning rate", dropped_lr is not None)) if present]
    if left_out:
        print(f"{path}: its {' and '.join(left_out)} are {config['method']}'s, not applied to {method.name}")
    return {}, train


def _print_run(record) -> None:
    """A finished run in a few lines: what ran, at what cost, and its scores against the base model's
    zero-shot score, and against its own state before training where that was scored."""
    primary = record["task"]["primary_metric"]
    print(f"{record['task']['name']} / {record['model']['name']} / {record['method']['name']}  "
          f"({record['cost']['trainable_params']:,} trainable params, "
          f"{record['cost']['train_seconds']:.1f}s training)")
    base, initial = record.get("base_zero_shot") or {}, record.get("zero_shot") or {}
    for split, scores in record["scores"].items():
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in scores.items() if k != "n")
        gain = (record.get("improvement_pct") or {}).get(split)  # none over a zero-shot score <= 0
        versus = f"; zero-shot {primary}={base[split][primary]:.4f}" if split in base else ""
        versus += f", {gain:+.1f}%" if versus and gain is not None else ""
        versus += f"; before training {primary}={initial[split][primary]:.4f}" if split in initial else ""
        print(f"  {split:<10} {metrics}  (n={scores['n']}{versus})")
