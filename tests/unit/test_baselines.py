"""The simple baselines race before step 0. On a task built so that the empty prompt answers every
example right and the initial prompt does not (the gold answers are the tiny model's own answers
without a prompt), the run starts from the empty prompt, says so, and still judges its final
choice against the initial prompt; per-source counts agree with the history."""

from __future__ import annotations

from helpers import TINY_MODEL_RUN

from gradprompt.graph import optimize, run_values
from gradprompt.nodes.greater import rollout
from gradprompt.nodes.tasks import builtin_task
from gradprompt.nodes.tasks.readout import readout_of

INITIAL = "Solve the problem, explain your reasoning."


def _rows_the_empty_prompt_gets_right(rt) -> list[dict]:
    task = builtin_task("compare")
    readout = readout_of(task.answer_format, "choice", TINY_MODEL_RUN["max_new_tokens"])
    examples = task.examples[:40]
    empty, initial = rollout(
        rt, readout, examples, [(), tuple(rt.encode_prompt(INITIAL))], TINY_MODEL_RUN["max_new_tokens"]
    )
    rows = [{"question": e.question, "answer": a.strip()} for e, a in zip(examples, empty.answers, strict=True)]
    differ = sum(a != b for a, b in zip(empty.answers, initial.answers, strict=True))
    assert differ >= 8, "the construction needs the two prompts to answer differently"
    assert {r["answer"] for r in rows} == {"Yes", "No"}
    return rows


def test_the_run_starts_from_the_empty_prompt_when_it_is_best_on_the_pool(tmp_path, on_tiny_model):
    rows = _rows_the_empty_prompt_gets_right(on_tiny_model)
    settings = {**TINY_MODEL_RUN, "train": 12, "dev": 12, "test": 12}
    result = optimize(examples=rows, initial_prompt=INITIAL, steps=1, run_dir=tmp_path, **settings)
    values = run_values(result.run_id, run_dir=tmp_path)
    start = values["start"]
    assert start["name"] == "empty" and start["prompt"] == []
    assert start["reason"].startswith("started from the empty prompt")
    assert values["history"][0]["prompt"] == []  # step 0 edits the empty prompt
    by_name = {b["baseline"]: b for b in values["baselines"]}
    assert set(by_name) == {"initial", "empty", "step by step", "answer format"}
    assert by_name["answer format"]["text"] in ("Answer with Yes or No.", "Answer with No or Yes.")  # data order
    assert by_name["empty"]["right"] == 12 and by_name["initial"]["right"] < 12
    # the final choice compares with the initial prompt, not with where the search started
    assert values["final"]["baseline"]["text"] == INITIAL and values["final"]["start"]["name"] == "empty"


def test_without_baselines_the_run_starts_from_the_initial_prompt(tmp_path, on_tiny_model):
    rows = _rows_the_empty_prompt_gets_right(on_tiny_model)
    settings = {**TINY_MODEL_RUN, "train": 12, "dev": 12, "test": 12, "baselines": False}
    result = optimize(examples=rows, initial_prompt=INITIAL, steps=1, run_dir=tmp_path, **settings)
    values = run_values(result.run_id, run_dir=tmp_path)
    assert values["start"]["name"] == "initial" and values["baselines"] == []
    assert on_tiny_model.decode(values["history"][0]["prompt"]) == INITIAL


def test_per_source_counts_equal_the_history(tmp_path, on_tiny_model):
    settings = {**TINY_MODEL_RUN, "train": 6, "n_evaluate": 3, "phrase_edits": 2}
    result = optimize("builtin:compare", initial_prompt=INITIAL, steps=3, run_dir=tmp_path, **settings)
    assert result.history
    for h in result.history:
        counts = h["sources"]
        assert set(counts) <= {"gradient", "phrase", "retrieval", "refinement", "human"}
        assert "refinement" not in counts  # off by default: no chat model was passed in
        for source, row in counts.items():
            raced = [c for c in h["candidates"] if c["source"] == source]
            assert row["raced"] == len(raced) and row["finished"] == sum(bool(c.get("finished")) for c in raced)
            assert row["offered"] >= row["raced"] >= row["finished"] >= row["accepted"]
            assert row["accepted"] == int(h["changed"] and h["accepted"]["source"] == source)
        assert counts["gradient"]["offered"] >= 1 and counts["phrase"]["offered"] >= 1
