"""Budgets a user thinks in: a time budget and a rollout budget stop the search after the step
under way, then the run finalizes as usual; what a run spent is counted across processes."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import TINY_MODEL_RUN

from gradprompt.graph import optimize, resume, run_values
from gradprompt.graph.api import ApprovalPending
from gradprompt.nodes.settings import RunSettings

SMALL = TINY_MODEL_RUN


@pytest.mark.parametrize(
    ("text", "seconds"), [("20m", 1200), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("45", 45), (30, 30)]
)
def test_durations_read_as_a_user_writes_them(text, seconds):
    assert RunSettings(task="builtin:compare", time_budget=text).time_budget == seconds


@pytest.mark.parametrize("bad", ["20 minutes", "m20", "1h-5m", "-3", "0"])
def test_a_duration_that_is_not_one_is_refused(bad):
    with pytest.raises(ValueError, match="time_budget"):
        RunSettings(task="builtin:compare", time_budget=bad)


def test_a_spent_time_budget_stops_after_the_step_under_way(tmp_path, on_tiny_model):
    result = optimize("builtin:compare", steps=6, time_budget=0.001, run_dir=tmp_path, **SMALL)
    assert result.steps == 1 and result.stop_reason.startswith("time budget of 0.001 s spent")
    assert result.final.get("baseline")  # finalized: dev and test scores as after any run


def test_rollout_budget_counts_generated_rollouts_across_processes(tmp_path, on_tiny_model):
    with pytest.raises(ApprovalPending):  # stop the first process after step 0's evaluation
        optimize(
            "builtin:compare", steps=6, max_rollouts=10_000, human_approval=True, run_dir=tmp_path, run_id="r", **SMALL
        )
    from gradprompt.graph import run_values

    first = run_values("r", run_dir=tmp_path)["spent"]
    assert first["rollouts"] > 0 and first["seconds"] > 0
    result = resume("r", run_dir=tmp_path, approver=lambda request: {"action": "approve"})
    assert result.steps == 6  # the budget was large enough
    spent = run_values("r", run_dir=tmp_path)["spent"]
    with sqlite3.connect(tmp_path / "rollouts.sqlite") as db:
        cached = db.execute("SELECT count(*) FROM store").fetchone()[0]
    # every rollout generated was cached once, in whichever process generated it
    assert spent["rollouts"] == cached and spent["rollouts"] > first["rollouts"]

    small = optimize("builtin:compare", steps=6, max_rollouts=1, run_dir=tmp_path / "other", **SMALL)
    assert small.steps == 1 and small.stop_reason.startswith("rollout budget of 1 spent")


def test_two_runs_in_one_process_count_only_their_own_rollouts(tmp_path, on_tiny_model):
    """Two runs at once in one process (as two threads of a server): each run's spent rollouts are
    the rollouts it generated, which its own cache holds once each, never the other run's."""
    import threading

    results, errors = {}, []

    def run(name: str, task: str) -> None:
        try:
            results[name] = optimize(task, steps=3, run_dir=tmp_path / name, run_id=name, **SMALL)
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    runs = (("a", "builtin:compare"), ("b", "builtin:arithmetic"))
    threads = [threading.Thread(target=run, args=run_of) for run_of in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name in ("a", "b"):
        spent = run_values(name, run_dir=tmp_path / name)["spent"]
        with sqlite3.connect(tmp_path / name / "rollouts.sqlite") as db:
            cached = db.execute("SELECT count(*) FROM store").fetchone()[0]
        assert spent["rollouts"] == cached > 0, name
