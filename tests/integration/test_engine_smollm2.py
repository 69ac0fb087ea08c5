"""The engine on the real bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import random

import pytest

from nodes.errors import GradpromptError
from nodes.greater import choose, minibatch, next_position, propose, rollout
from nodes.runtime.model_loading import load_model
from nodes.settings import StepSettings
from nodes.tasks import builtin_task

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


def test_one_full_step_changes_the_prompt(smollm2_rt):
    rt = smollm2_rt
    task = builtin_task("compare")
    fmt = task.answer_format
    settings = StepSettings(batch_size=4, max_new_tokens=24, n_evaluate=3)
    examples = minibatch(task.split(0, 16, 8, 8).train, settings.batch_size, seed=0, step=0)
    prompt = tuple(rt.encode_prompt("Let's think step by step."))
    current = rollout(rt, fmt, examples, [prompt], settings.max_new_tokens)[0]
    assert len(current.reasonings) == 4 and all(current.reasonings)
    proposal = propose(rt, fmt, settings, examples, prompt, 0, current.reasonings, random.Random(0))
    assert proposal.current_token == prompt[0] and prompt[0] in proposal.candidates
    assert len(proposal.candidates) >= 2 * settings.n_evaluate
    assert all(rt.allowed_tokens[c] for c in proposal.candidates)
    choice = choose(rt, fmt, settings, examples, proposal, current)
    evaluated = [p for p, _ in choice.evaluated]
    assert len(evaluated) == 3 and choice.prompt in evaluated
    scores = {p: r.score(settings.score_nll_weight) for p, r in choice.evaluated}
    assert scores[choice.prompt] == min(scores.values())
    for p, r in choice.evaluated:
        assert len(r.correct) == 4 and r.nll > 0 and p[1:] == prompt[1:]
    if choice.prompt == prompt:  # the current token can win; then the sweep still moves on
        assert next_position(rt, prompt, 0) == 1
    else:
        assert choice.prompt[0] != prompt[0]


def test_paper_variant_takes_the_gradient_argmax(smollm2_rt):
    rt = smollm2_rt
    task = builtin_task("compare")
    settings = StepSettings(batch_size=3, max_new_tokens=16, variant="paper")
    examples = minibatch(task.split(0, 16, 8, 8).train, 3, seed=1, step=0)
    prompt = tuple(rt.encode_prompt("Think carefully."))
    current = rollout(rt, task.answer_format, examples, [prompt], 16)[0]
    proposal = propose(rt, task.answer_format, settings, examples, prompt, 1, current.reasonings, random.Random(0))
    choice = choose(rt, task.answer_format, settings, examples, proposal, current)
    best = min(zip(proposal.gradients, proposal.candidates, strict=True))[1]
    assert choice.prompt == proposal.prompt_with(best)
    assert choice.evaluated == [(choice.prompt, None)]


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
    assert proposal.positions == [1, 2, 3]
    for edited in proposal.top_prompts(3):
        assert edited[0] == prompt[0] and edited[4:] == prompt[4:]
    best = proposal.top_prompts(1)[0]
    assert [best[p] for p in proposal.positions] == [proposal.ranked[0], *(m[3][0] for m in proposal.more)]
