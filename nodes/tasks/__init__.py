"""Task definitions: datasets, answer types and metrics."""

from nodes.tasks.answer_types import AnswerFormat, AnswerKind, detect_answer_format
from nodes.tasks.builtin import BUILTIN_TASKS, builtin_task
from nodes.tasks.loaders import load_task
from nodes.tasks.task import Example, Splits, Task

__all__ = [
    "BUILTIN_TASKS",
    "AnswerFormat",
    "AnswerKind",
    "Example",
    "Splits",
    "Task",
    "builtin_task",
    "detect_answer_format",
    "load_task",
]
