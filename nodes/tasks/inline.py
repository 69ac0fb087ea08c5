"""Examples handed over in memory (a list of dicts or a pandas DataFrame) instead of a file.

They become the task ``examples:NAME@DIGEST``: the digest is of the examples themselves, so the
spec names exactly one data set and the rollout cache and trajectory fingerprints stay truthful.
The run keeps a copy beside its checkpoints, so ``resume`` in a later process registers them again
before any node needs them (see ``graph.lifecycle``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

from gradprompt.errors import GradpromptError
from gradprompt.nodes.tasks.task import Example, Task

KIND = "examples"
_registered: dict[str, list[dict]] = {}
_lock = threading.Lock()


def _rows(examples: Any, question_field: str | None, answer_field: str | None) -> list[dict]:
    """``examples`` as [{"question": str, "answer": str}, ...], or one clear error naming the row."""
    if hasattr(examples, "to_dict") and hasattr(examples, "columns"):  # a pandas DataFrame
        examples = examples.to_dict("records")
    if isinstance(examples, dict | str) or not hasattr(examples, "__iter__"):
        raise GradpromptError(
            "examples must be a list of {'question': ..., 'answer': ...} dicts or a pandas DataFrame with those "
            f"columns, got {type(examples).__name__}"
        )
    q, a = question_field or "question", answer_field or "answer"
    out = []
    for i, row in enumerate(examples):
        if not isinstance(row, dict):
            raise GradpromptError(f"example {i} is a {type(row).__name__}, not a dict with {q!r} and {a!r}")
        missing = [k for k in (q, a) if row.get(k) is None or str(row.get(k)).strip() == ""]
        if missing:
            raise GradpromptError(
                f"example {i} has no {' or '.join(map(repr, missing))} (it has {sorted(row)}); name the fields with "
                "question_field= and answer_field="
            )
        out.append({"question": str(row[q]), "answer": str(row[a])})
    if not out:
        raise GradpromptError("examples is empty: pass at least one question with its answer")
    return out


def register(
    examples: Any, name: str = "examples", question_field: str | None = None, answer_field: str | None = None
) -> tuple[str, list[dict]]:
    """Register in-memory examples; returns their task spec and the normalised rows to keep."""
    rows = _rows(examples, question_field, answer_field)
    digest = hashlib.sha1(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "examples"
    spec = f"{KIND}:{safe}@{digest}"
    with _lock:
        _registered[spec] = rows
    return spec, rows


def register_rows(spec: str, rows: list[dict]) -> None:
    """Register rows kept with a run under the spec the run was started with."""
    with _lock:
        _registered[spec] = rows


def is_inline(spec: str) -> bool:
    return spec.partition(":")[0].lower() == KIND


def load_inline(spec: str) -> Task:
    with _lock:
        rows = _registered.get(spec)
    if rows is None:
        raise GradpromptError(
            f"the examples of task {spec!r} are not loaded in this process: they are kept with the run that was "
            "started with them, so resume or fork that run (`gradprompt resume RUN_ID`), or pass examples= again"
        )
    name = spec.partition(":")[2].rpartition("@")[0]
    return Task.from_examples(name, [Example(r["question"], r["answer"]) for r in rows], source=spec)
