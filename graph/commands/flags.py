"""Run settings as command-line flags, grouped the way a user looks for them.

Every :class:`nodes.settings.RunSettings` field belongs to exactly one group; a command lists only
the fields it reads (``optimize`` all of them, ``evaluate`` the task, split, model and readout
ones), so ``--help`` never offers a flag that does nothing.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

from gradprompt.nodes.settings import RunSettings

GROUPS: dict[str, tuple[str, ...]] = {
    "task and data": (
        "initial_prompt",
        "question_field",
        "answer_field",
        "metric",
        "train",
        "dev",
        "test",
        "seed",
    ),
    "how the model answers": ("max_new_tokens", "readout", "placement"),
    "run control (budgets and stopping)": (
        "steps",
        "time_budget",
        "max_rollouts",
        "patience",
        "target_accuracy",
        "human_approval",
    ),
    "search (one GReaTer step)": (
        "baselines",
        "moves",
        "phrase_edits",
        "variant",
        "batch_size",
        "top_k",
        "group_size",
        "n_groups",
        "temperature",
        "grad_nll_weight",
        "fluency_weight",
        "fluency_max_cost",
        "reading_top_k",
        "score_nll_weight",
        "edit_schedule",
        "edit_max",
        "edit_min",
        "edit_positions",
    ),
    "racing and final choice": (
        "n_evaluate",
        "race_slices",
        "race_alpha",
        "acceptance",
        "keep_best",
        "final_candidates",
        "final_alpha",
        "final_rule",
    ),
    "trajectory (GPO retrieval and warm start)": (
        "trajectory",
        "store",
        "embeddings",
        "retrieve_k",
        "cross_task",
        "warm_start",
        "warm_start_rule",
    ),
    "refinement (a chat model rewrites the prompt)": (
        "refine",
        "refine_candidates",
        "refine_max_new_tokens",
        "refine_patience",
    ),
    "model and device": ("model", "device", "dtype", "max_batch"),
}

# What `evaluate` reads: how the task is split, how the model runs and how answers are read.
EVALUATE_FIELDS = frozenset(
    {
        *(set(GROUPS["task and data"]) - {"initial_prompt"}),
        *GROUPS["how the model answers"],
        *GROUPS["model and device"],
        "score_nll_weight",
    }
)
# The run settings of `optimize` (the task is its own required flag).
OPTIMIZE_FIELDS = frozenset(RunSettings.model_fields) - {"task"}
# A sweep takes lists of tasks, models and seeds instead of one of each.
SWEEP_FIELDS = OPTIMIZE_FIELDS - {"model", "seed"}


_METAVARS = {"time_budget": "DURATION", "max_rollouts": "N", "embeddings": "MODEL", "store": "FOLDER_OR_URL"}
# Parsed by the settings themselves (a duration such as 20m), so the flag passes the text through.
_AS_TEXT = {"time_budget"}


def _field_type(annotation) -> tuple[type | None, list[str] | None]:
    """The argparse type (and choices) of a pydantic field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_type(args[0])
    if annotation in (int, float, str, bool):
        return annotation, None
    return str, None


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _add_field(group, name: str) -> None:
    info = RunSettings.model_fields[name]
    kind, choices = _field_type(info.annotation)
    if name in _AS_TEXT:
        kind = str
    default = info.default
    text = info.description or name
    if kind is bool:
        group.add_argument(
            flag_name(name),
            dest=name,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=text if default is None else f"{text} (default {'on' if default else 'off'})",
        )
        return
    if default is not None and not isinstance(default, type(...)):
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text += f" (default {shown})"
    group.add_argument(
        flag_name(name),
        dest=name,
        type=kind,
        choices=choices,
        default=None,
        help=text,
        metavar=None if choices else _METAVARS.get(name, name.split("_")[-1].upper()),
    )


def add_settings_flags(parser: argparse.ArgumentParser, fields: frozenset[str]) -> None:
    """The flags of ``fields``, in their groups (a group with none of them is left out)."""
    for title, names in GROUPS.items():
        wanted = [n for n in names if n in fields]
        if not wanted:
            continue
        group = parser.add_argument_group(title)
        for name in wanted:
            _add_field(group, name)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags left out keep the run's defaults)."""
    return {
        name: getattr(args, name)
        for name in RunSettings.model_fields
        if name != "task" and getattr(args, name, None) is not None
    }
