"""A run config (`spbench run --config`, e.g. a search's best.yaml): its shape checked, and the
settings it gives a method and its training, each checked against the dataclass it fills."""

from __future__ import annotations

from pathlib import Path

from bench.yaml_values import checked_settings, read_yaml_mapping, unknown_name

# what `spbench run --config` reads, and what a search's best.yaml adds for people to read
CONFIG_KEYS = ("tasks", "tasks_dirs", "model", "method", "settings", "train")
CONFIG_NOTES = ("study", "trial", "objectives", "validation_values", "validation_by_task", "relative_to",
                "validation_standard_error", "tied_trials", "pareto_front", "test", "records")


def config_file(path: Path) -> Path:
    """The file a --config names: a search's folder stands for its best.yaml, as `spbench predict` takes it."""
    if not path.is_dir():
        return path
    if (path / "best.yaml").is_file():
        return path / "best.yaml"
    held = " (a run's folder: its record.json is no config)" if (path / "record.json").is_file() else ""
    raise ValueError(f"--config {path}: a folder with no best.yaml in it{held}; give a run config file, or a "
                     "search's folder")


def read_config(path: Path) -> dict:
    """A run config, its shape checked: known keys, `tasks` a list of names, `model` and `method` names."""
    config = read_yaml_mapping(path, what="a run config (model, method, settings, train)",
                               error=lambda problem: ValueError(f"--config {path}: {problem}"))
    for key in config:
        if key not in CONFIG_KEYS + CONFIG_NOTES:  # the notes are for people: not offered as what was meant
            raise ValueError(f"--config {path}: {unknown_name(key, CONFIG_KEYS)}")
    tasks = config.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ValueError(f"--config {path}: `tasks` must be a list of task names, got {tasks!r}")
    folders = config.get("tasks_dirs", [])
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ValueError(f"--config {path}: `tasks_dirs` must be a list of folders of task cards, got {folders!r}")
    for key in ("model", "method"):
        if key in config and not isinstance(config[key], str):
            raise ValueError(f"--config {path}: `{key}` must be a name, got {config[key]!r}")
    return config


def config_values(path: Path, config: dict, key: str, owner: type) -> dict:
    """The config's `settings` or `train` mapping, each value checked against the dataclass it fills."""
    return checked_settings(f"--config {path} {key}", config.get(key), owner.__dataclass_fields__,
                            "training setting" if key == "train" else f"{config.get('method')} setting")

