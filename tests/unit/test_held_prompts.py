"""A step never moves back to a prompt the run already held: undoing and redoing one edit is a
cycle, not progress. Whole graph runs on the tiny model, with a real Chroma store seeded so that
retrieval offers the prompt the run just left, with a perfect score."""

from __future__ import annotations

import pytest

from gradprompt.graph import optimize
from gradprompt.store.trajectory import TrajectoryStore
from gradprompt.store.trajectory_record import TrajectoryRecord

SMALL = {
    "train": 4,
    "dev": 4,
    "test": 4,
    "batch_size": 2,
    "max_new_tokens": 4,
    "n_evaluate": 3,
    "top_k": 5,
    "keep_best": 3,
    "refine": False,
    "acceptance": "always",
    "edit_max": 20,
    "edit_min": 20,
    "baselines": False,  # start from the initial prompt, which retrieval then offers again
}
INITIAL = "Let's think step by step."


@pytest.mark.parametrize(("variant", "moves"), [("official", "words"), ("official", "tokens"), ("paper", "tokens")])
def test_a_step_never_returns_to_a_prompt_the_run_held(tmp_path, on_tiny_model, variant, moves):
    rt = on_tiny_model
    store = TrajectoryStore(tmp_path / "store")
    initial = rt.encode_prompt(INITIAL)
    store.add(
        [
            TrajectoryRecord(
                text=INITIAL,
                prompt_ids=list(initial),
                task="compare",
                model="smollm2",
                run_id="earlier",
                step=0,
                source="gradient",
                score=0.0,
                accuracy=1.0,
            )
        ]
    )
    del store
    result = optimize(
        "builtin:compare",
        steps=4,
        run_dir=tmp_path / "runs",
        store=str(tmp_path / "store"),
        variant=variant,
        moves=moves,
        **SMALL,
    )
    held = [tuple(initial)]
    offered_again = 0
    for h in result.history:
        assert tuple(h["prompt"]) == held[-1]
        if h["changed"]:
            assert tuple(h["accepted"]["prompt"]) not in held, f"step {h['step']} went back to a prompt it held"
            held.append(tuple(h["accepted"]["prompt"]))
        # nothing the run held is even raced, and the history says how many were dropped for it
        assert not {tuple(c["prompt"]) for c in h["candidates"]} & set(held[:-1])
        offered_again += h["rejected"].get("held_before", 0)
    assert len(held) >= 3, "the run should move at least twice for the check to mean something"
    # retrieval offered the initial prompt (the store's best) once the run had left it
    assert offered_again >= 1
