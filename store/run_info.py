"""A run's index entry read back, the same way from a runs folder and from PostgreSQL."""

from __future__ import annotations

from gradprompt.errors import GradpromptError


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
