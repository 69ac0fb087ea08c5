"""The engine on the real bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import random

import pytest

from gradprompt.errors import GradpromptError
from gradprompt.nodes.decisions import SelectionConfig, accept, race
from gradprompt.nodes.greater import next_position, pool_order, propose, rollout
from gradprompt.nodes.rollout_cache import RolloutCache, cache_namespace
from gradprompt.nodes.runtime.model_loading import load_model
from gradprompt.nodes.settings import StepSettings
from gradprompt.nodes.tasks import builtin_task

pytestmark = pytest.mark.model


def test_chat_layout_on_the_real_template(smollm2_rt):
    rt = smollm2_rt
    question = builtin_task("category").examples[0].question
    prompt = rt.encode_prompt("Let's think step by step.")
    for placement in ("after", "before", "system"):
        layout = type(rt.layout)(rt.tokenizer, placement)
        enc = layout.encode(question, prompt)
        assert enc.ids[enc.prompt[0] : enc.prompt[1]] == tuple(prompt)
        assert rt.tokenizer.decode(enc.ids[enc.question[0] : enc.question[1]]).strip() == question
        assert rt.tokenizer.decode(enc.ids).endswith("<|im_start|>assistant\n")


def test_one_full_step_races_candidates_and_always_moves_to_the_best(smollm2_rt):
    """A whole official step on the real model: rollout of the current prompt on the pool,
    gradient proposal on a batch of it, a race of the top edits, and the move to a finisher (each
    acceptance rule on a real race: tests/unit/test_stopping_and_acceptance.py)."""
    rt = smollm2_rt
    task = builtin_task("compare")
    fmt = task.answer_format
    settings = StepSettings(batch_size=4, max_new_tokens=24, n_evaluate=3)
    pool = pool_order(task.split(0, 12, 8, 8).train, 0)
    cache = RolloutCache(None, cache_namespace("engine-step-test"))
    prompt = tuple(rt.encode_prompt("Let's think step by step."))
    current = rollout(rt, fmt, pool, [prompt], settings.max_new_tokens, cache=cache)[0]
    assert len(current.reasonings) == 12 and all(current.reasonings)
    assert all(lp < 0 for lp in current.gold_logprobs)
    proposal = propose(rt, fmt, settings, pool[:4], prompt, 0, current.reasonings[:4], random.Random(0))
    assert proposal.current_token == prompt[0] and prompt[0] in proposal.candidates
    assert len(proposal.candidates) >= 2 * settings.n_evaluate
    assert all(rt.allowed_tokens[c] for c in proposal.candidates)
    top = [p for p in proposal.top_prompts(settings.n_evaluate + 1) if p != prompt][: settings.n_evaluate]
    assert len(top) == 3 and all(p[1:] == prompt[1:] and p[0] != prompt[0] for p in top)

    def evaluate(alive, start, stop):
        drafts = current.reasonings[start:stop]
        return [r.outcomes for r in rollout(rt, fmt, pool[start:stop], alive, 24, drafts=drafts, cache=cache)]

    result = race(top, current.outcomes, evaluate, SelectionConfig(race_slices=(4, 8)))
    assert result.slices == [4, 8, 12]
    moved = accept(prompt, current.outcomes, result, "always")
    assert moved.moved and moved.prompt != prompt and moved.prompt in top  # the step changes the prompt
    assert next_position(rt, moved.prompt, 0) == 1


def test_paper_variant_takes_the_gradient_argmax_unraced(tmp_path):
    """A step of the paper variant races nothing and moves to the best-ranked gradient edit."""
    from helpers import SMALL_RUN

    from gradprompt.graph import optimize, run_values

    result = optimize(
        "builtin:compare", steps=1, variant="paper", run_dir=tmp_path, trajectory=False, refine=False, **SMALL_RUN
    )
    values = run_values(result.run_id, run_dir=tmp_path)
    proposal, (step,) = values["proposal"], values["history"]
    initial = values["baseline"]["prompt"]

    def with_token(token: int) -> list[int]:
        base, at = proposal["base_prompt"], proposal["position"]
        return [*base[:at], token, *base[at + 1 :]]

    ranked = sorted(zip(proposal["gradients"], proposal["candidates"], strict=True))
    grad, token = next((g, t) for g, t in ranked if with_token(t) != initial)  # the run never returns to a held one
    assert result.variant == step["variant"] == "paper"  # every result says which variant made it
    assert len(step["candidates"]) == 1 and step["candidates"][0].get("examples") is None  # nothing raced
    assert step["candidates"][0].get("score") is None
    assert step["accepted"]["prompt"] == with_token(token) and step["changed"]
    assert step["accepted"]["gradient"] == pytest.approx(grad)
    assert "evaluate" in step["timings"] and not values.get("race_slices")


def test_growing_the_prompt_appends_a_token(smollm2_rt):
    rt = smollm2_rt
    task = builtin_task("arithmetic")
    settings = StepSettings(batch_size=2, max_new_tokens=8)
    examples = task.examples[:2]
    prompt = tuple(rt.encode_prompt("Solve it"))  # no sentence end: the sweep grows it
    assert next_position(rt, prompt, len(prompt) - 1) == len(prompt)
    current = rollout(rt, task.answer_format, examples, [prompt], 8)[0]
    proposal = propose(
        rt, task.answer_format, settings, examples, prompt, len(prompt), current.reasonings, random.Random(0)
    )
    assert len(proposal.base_prompt) == len(prompt) + 1 and proposal.base_prompt[:-1] == prompt


def test_prompt_longer_than_the_context_is_a_clear_error(smollm2_rt):
    rt = smollm2_rt
    long_prompt = tuple(rt.encode_prompt("word " * (rt.context_limit + 10)))
    task = builtin_task("compare")
    with pytest.raises(GradpromptError, match="context holds"):
        rollout(rt, task.answer_format, task.examples[:1], [long_prompt], 8)


@pytest.mark.parametrize("spec", ["no-such-model", "/tmp/definitely/not/here", "org/not-downloaded-model"])
def test_unknown_model_is_a_clear_error(spec):
    with pytest.raises(GradpromptError, match="model"):
        load_model(spec)


def test_window_proposal_edits_several_positions(smollm2_rt):
    rt = smollm2_rt
    task = builtin_task("compare")
    settings = StepSettings(batch_size=2, max_new_tokens=8)
    examples = task.examples[:2]
    prompt = tuple(rt.encode_prompt("Let's think step by step."))
    current = rollout(rt, task.answer_format, examples, [prompt], 8)[0]
    proposal = propose(
        rt, task.answer_format, settings, examples, prompt, 1, current.reasonings, random.Random(0), n_positions=3
    )
    assert [proposal.position, *(m[0] for m in proposal.more)] == [1, 2, 3]
    for edited in proposal.top_prompts(3):
        assert edited[0] == prompt[0] and edited[4:] == prompt[4:]
    best = proposal.top_prompts(1)[0]
    assert [best[p] for p in (1, 2, 3)] == [proposal.ranked[0], *(m[3][0] for m in proposal.more)]
