"""Task cards (one YAML file per task), the data they point at, and their metrics."""

from tasks.card import TaskCard, TaskCardError, load_card
from tasks.registry import UnknownTask, available_tasks, find_task
from tasks.task import Example, Task, load_task

__all__ = [
    "Example",
    "Task",
    "TaskCard",
    "TaskCardError",
    "UnknownTask",
    "available_tasks",
    "find_task",
    "load_card",
    "load_task",
]
