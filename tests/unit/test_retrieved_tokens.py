"""GPO's direction in a step: the tokens that similar past prompts hold at the edited position join
GReaTer's candidates, and prompts of other tasks only come in with ``cross_task``. A tiny-model
run on a real Chroma store seeded with one prompt of this task and one of another."""

from __future__ import annotations

import pytest
from helpers import TINY_MODEL_RUN

from gradprompt.graph import list_runs, optimize, run_values
from gradprompt.store.trajectory import TrajectoryStore
from gradprompt.store.trajectory_record import TrajectoryRecord

INITIAL = "Let's think step by step."


def _seed(rt, location, initial: list[int]) -> tuple[int, int]:
    """One past prompt of this task and one of another, each with its own first token."""
    allowed = [int(t) for t in rt.allowed_tokens.nonzero()[:, 0].tolist() if t != initial[0]]
    own, other = allowed[40], allowed[90]
    store = TrajectoryStore(location)
    for token, task, run in ((own, "compare", "past-own"), (other, "arithmetic", "past-other")):
        ids = [token, *initial[1:]]
        store.add(
            [
                TrajectoryRecord(
                    text=rt.decode(ids),
                    prompt_ids=ids,
                    task=task,
                    model="smollm2",
                    run_id=run,
                    step=0,
                    source="gradient",
                    score=0.1,
                    accuracy=0.9,
                )
            ]
        )
    return own, other


@pytest.mark.parametrize("cross_task", [True, False])
def test_retrieved_tokens_join_the_candidates_and_other_tasks_only_across_tasks(tmp_path, on_tiny_model, cross_task):
    rt = on_tiny_model
    initial = rt.encode_prompt(INITIAL)
    own, other = _seed(rt, tmp_path / "store", initial)
    settings = {**TINY_MODEL_RUN, "trajectory": True, "baselines": False, "warm_start": False}
    optimize(
        "builtin:compare",
        steps=1,
        run_dir=tmp_path / "runs",
        store=str(tmp_path / "store"),
        moves="tokens",
        cross_task=cross_task,
        initial_prompt=INITIAL,
        **settings,
    )
    values = run_values(_only_run(tmp_path / "runs"), run_dir=tmp_path / "runs")
    assert values["history"][0]["position"] == 0
    retrieved = {r["task"] for r in values["history"][0]["retrieved"] if not r.get("current")}
    assert retrieved == ({"compare", "arithmetic"} if cross_task else {"compare"})
    assert own in values["extra_tokens"] and own in values["proposal"]["candidates"]
    assert (other in values["extra_tokens"]) == cross_task
    if cross_task:
        assert other in values["proposal"]["candidates"]


def _only_run(run_dir) -> str:
    (run,) = list_runs(run_dir=run_dir)
    return run["run_id"]


def test_a_warm_start_by_best_takes_the_store_prompt_with_most_dev_examples_right(tmp_path, on_tiny_model):
    """``warm_start_rule="best"``: the best stored prompts of a similar task are scored on dev with
    the initial prompt, and the search starts from the one with most right (gold log-prob next); a
    stored prompt must beat the initial, not tie it."""
    from gradprompt.nodes.tasks import builtin_task

    rt = on_tiny_model
    initial = rt.encode_prompt(INITIAL)
    _seed(rt, tmp_path / "store", initial)
    store = TrajectoryStore(tmp_path / "store")
    # the seeded records of "arithmetic" (and of this task, which a warm start never offers) as a past task
    store.register_task("arithmetic", [e.question for e in builtin_task("arithmetic").examples[:32]], "number")
    store.add(
        [
            TrajectoryRecord(
                text="Add the numbers.",
                prompt_ids=rt.encode_prompt("Add the numbers."),
                task="arithmetic",
                model="smollm2",
                run_id="past-other",
                step=1,
                source="gradient",
                score=0.05,
                accuracy=0.95,
            )
        ]
    )
    del store
    settings = {**TINY_MODEL_RUN, "trajectory": True, "baselines": False, "dev": 6}
    result = optimize(
        "builtin:compare",
        steps=1,
        run_dir=tmp_path / "runs",
        store=str(tmp_path / "store"),
        warm_start=True,
        warm_start_rule="best",
        initial_prompt=INITIAL,
        **settings,
    )
    warm = run_values(result.run_id, run_dir=tmp_path / "runs")["warm_start"]
    considered, chosen = warm["considered"], warm["chosen"]
    assert warm["rule"] == "best" and considered[0]["initial"] and len(considered) == 3
    assert {c["task"] for c in considered[1:]} == {"arithmetic"}
    assert all(c["dev_accuracy"] is not None for c in considered)

    def rank(c: dict) -> tuple:
        return (round(c["dev_accuracy"] * 6), c["dev_gold_logprob"])

    assert all(rank(considered[chosen]) >= rank(c) for c in considered)
    if chosen:
        assert rank(considered[chosen]) > rank(considered[0])  # a stored prompt beats the initial, not ties it
    assert result.history[0]["current"]["text"] == considered[chosen]["text"]
