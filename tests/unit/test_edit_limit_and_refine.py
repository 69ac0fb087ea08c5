"""The edit-limit schedules, the word distance, and parsing of refinement replies."""

from __future__ import annotations

import pytest

from gradprompt.nodes.edit_limit import edit_limit, word_distance
from gradprompt.nodes.refine import meta_prompt, parse_candidates
from gradprompt.nodes.tasks import Example


def test_cosine_schedule_matches_gpo():
    got = [edit_limit("cosine", t, 18, 50, 10) for t in range(1, 19)]
    assert got == [49, 48, 47, 45, 42, 40, 36, 33, 30, 26, 23, 20, 17, 14, 12, 11, 10, 10]


def test_linear_and_constant_schedules():
    assert [edit_limit("linear", t, 4, 50, 10) for t in range(1, 5)] == [40, 30, 20, 10]
    assert {edit_limit("constant", t, 4, 50, 10) for t in range(1, 5)} == {50}
    with pytest.raises(ValueError, match="schedule"):
        edit_limit("exponential", 1, 4, 50, 10)


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("Let's think step by step.", "Let's think step by step.", 0),
        ("Let's think step by step.", "Let us think step by step.", 2),
        ("a b c", "a c", 1),
        ("", "one two three", 3),
        ("x y z", "z y x", 2),
    ],
)
def test_word_distance(a, b, d):
    assert word_distance(a, b) == d == word_distance(b, a)


def test_parse_candidates_counts_malformed_and_over_limit():
    current = "Let's think step by step."
    reply = (
        "Sure! <prompt>Let's think carefully step by step.</prompt>\n"
        "<prompt>  </prompt>\n"
        "<prompt>Completely different words that replace every single part of the instruction here.</prompt>\n"
        "<PROMPT>Let's think step by step.</PROMPT>\n"
        "<prompt>Let's think carefully step by step.</prompt>"
    )
    kept, malformed, over = parse_candidates(reply, current, limit=3)
    assert kept == ["Let's think carefully step by step."]
    assert malformed == 2  # the empty block and the unchanged prompt
    assert over == 1


def test_reply_without_blocks_is_malformed():
    assert parse_candidates("I think you should be careful.", "x", 5) == ([], 1, 0)


def test_meta_prompt_carries_trajectory_examples_and_limit():
    text = meta_prompt(
        "Let's think.",
        [{"text": "Solve it carefully.", "accuracy": 0.75}, {"text": "unscored", "accuracy": None}],
        [Example("Is 3 larger than 2?", "Yes")],
        7,
        2,
    )
    assert '"Solve it carefully." (accuracy 0.75)' in text and "unscored" not in text
    assert "Is 3 larger than 2?" in text and "Correct answer: Yes" in text
    assert "at most 7 words" in text and "Write 2 new instructions" in text


def test_meta_prompt_shows_the_current_prompt_and_dev_scored_prompts():
    text = meta_prompt(
        "Let's think.",
        [
            {"text": "Let's think.", "accuracy": None, "current": True},
            {"text": "Check each step.", "accuracy": None, "dev_accuracy": 0.6},
            {"text": "Count the objects.", "accuracy": 0.5, "examples": 16},
        ],
        [],
        5,
        1,
        accuracy=0.42,
    )
    assert 'Current instruction: "Let\'s think." (accuracy 0.42)' in text
    assert '"Check each step." (dev accuracy 0.60)' in text
    assert '"Count the objects." (accuracy 0.50 on 16 examples)' in text
    assert text.count("Let's think.") == 1  # the current prompt is not listed as an earlier one


def test_positions_per_step_decay_with_the_limit():
    from gradprompt.nodes.edit_limit import positions_for_step

    limits = [edit_limit("cosine", t, 10, 50, 10) for t in range(1, 11)]
    got = [positions_for_step(lim, 50, 10, 4) for lim in limits]
    assert got[0] == 4 and got[-1] == 1
    assert got == sorted(got, reverse=True)
    assert {positions_for_step(lim, 50, 10, 1) for lim in limits} == {1}
    assert positions_for_step(2, 50, 1, 8) <= 2  # never more positions than words allowed


def test_a_chat_model_that_fails_is_recorded_and_the_step_goes_on(tmp_path, tiny_rt, monkeypatch):
    """The refine step survives a failing chat model, and says so in the step's record (so a test
    that expects refinement can tell a failure from an empty reply)."""
    from langchain_core.language_models import BaseChatModel

    import gradprompt.nodes.session
    from gradprompt.graph import optimize

    class Failing(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "failing"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise ConnectionError("the chat server went away")

    monkeypatch.setattr(gradprompt.nodes.session, "_runtime", lambda *args: tiny_rt)
    small = {"train": 3, "dev": 3, "test": 3, "batch_size": 2, "max_new_tokens": 2, "n_evaluate": 2, "top_k": 4}
    result = optimize("builtin:compare", steps=2, run_dir=tmp_path, trajectory=False, chat_model=Failing(), **small)
    assert [h["refine_error"] for h in result.history] == ["ConnectionError: the chat server went away"] * 2
    assert all(c["source"] != "refinement" for h in result.history for c in h["candidates"])
