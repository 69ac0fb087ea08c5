"""Where runs live, as one interface: a local runs folder (:class:`store.checkpoints.RunFolder`)
and a PostgreSQL database (:class:`store.postgres_runs.PostgresRuns`) both implement :class:`Runs`,
so the graph layer drives, lists, resumes and removes runs without asking which it has."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gradprompt.errors import GradpromptError


@runtime_checkable
class Runs(Protocol):
    """A place runs live: their checkpoints and rollout caches, index entries, pending approval
    answers, in-memory examples and locks."""

    @property
    def where(self) -> str:
        """The place, as messages name it (a folder, or a URL without its password)."""

    def persistence(self) -> AbstractContextManager[tuple[Any, Any]]:
        """(checkpointer, store) for the graph layer: storage never compiles the graph itself."""

    def rollout_store(self) -> AbstractContextManager[Any]:
        """The (prompt, example) rollout cache of these runs."""

    def write_info(self, run_id: str, info: dict) -> Any: ...

    def raw_info(self, run_id: str) -> dict | None:
        """The run's index entry as stored, ``{"damaged": ...}`` when unreadable, None if unknown."""

    def read_info(self, run_id: str) -> dict:
        """The run's index entry, or one clear error (see :func:`checked_info`)."""

    def list_ids(self) -> list[str]: ...

    def write_decision(self, run_id: str, answer: dict) -> None: ...

    def read_decision(self, run_id: str) -> dict | None: ...

    def clear_decision(self, run_id: str) -> None: ...

    def write_examples(self, run_id: str, rows: list[dict]) -> None: ...

    def read_examples(self, run_id: str) -> list[dict] | None: ...

    def lock(self, run_id: str, doing: str) -> AbstractContextManager[Any]:
        """Held while one process drives the run: a second is refused, naming the holder."""

    def holder(self, run_id: str) -> str | None: ...

    def remove(self, run_id: str) -> None: ...

    def folder(self, run_id: str) -> Path:
        """The run's local folder (reports, exports), in the runs folder either way."""


def checked_info(info: dict | None, run_id: str, known: list[str], where: str, damaged: str) -> dict:
    """A run's index entry, or one clear error: unknown run (naming recent ones) or damaged entry."""
    if info is None:
        recent = ", ".join(sorted(known)[-5:]) or "none yet"
        raise GradpromptError(
            f"unknown run id {run_id!r} in {where} (recent runs: {recent}); see `gradprompt runs list`, or pass "
            "the --run-dir or --checkpointer where the run was made"
        )
    settings = info.get("settings") if isinstance(info, dict) else None
    needed = ("task", "model", "variant", "steps")
    if "damaged" in info or not isinstance(settings, dict) or not all(k in settings for k in needed):
        raise GradpromptError(damaged)
    return info
