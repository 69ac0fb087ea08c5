"""Task definitions: datasets, answer types and metrics."""

from gradprompt.nodes.tasks.answer_types import AnswerFormat, AnswerKind, detect_answer_format
from gradprompt.nodes.tasks.builtin import BUILTIN_TASKS, builtin_task
from gradprompt.nodes.tasks.loaders import load_task
from gradprompt.nodes.tasks.task import Example, Splits, Task

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
