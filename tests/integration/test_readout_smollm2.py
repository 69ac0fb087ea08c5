"""The choice readout and direct answers on the bundled model, on SST-2 (the classification data)."""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_RUN

from gradprompt.graph import evaluate_prompts, optimize
from gradprompt.nodes.session import session
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.tasks.readout import readout_of

pytestmark = pytest.mark.model

PROMPT = "Classify the sentiment of the review."


def _per_option_forward(rt, readout, example, prompt_ids, max_new: int) -> bool:
    """Whether the likeliest label after greedy reasoning and the extractor is the gold one, from
    plain generate and one plain forward per label: what the readout must agree with."""
    ctx = rt.layout.encode(example.question, prompt_ids)
    reasoning = rt.generate([ctx.ids], max_new)[0] if max_new else ()
    head = ctx.ids + reasoning + rt.extractor_ids(readout.extractor(example.question))
    scores = {}
    for label, text in readout.options(example.question):
        option = rt.extractor_ids(text)
        with torch.no_grad():
            logits = rt.model(input_ids=torch.tensor([head + option])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        scores[label] = sum(float(logp[len(head) - 1 + j, t]) for j, t in enumerate(option))
    return max(scores, key=scores.get) == readout.fmt.normalize_gold(example.answer)


@pytest.mark.parametrize("max_new", [8, 0])
def test_evaluate_with_the_choice_readout_agrees_with_a_forward_per_option(data_dir, max_new):
    task = f"jsonl:{data_dir / 'fsc' / 'sst-2.jsonl'}"
    sizes = {"train": 4, "dev": 4, "test": 8, "max_new_tokens": max_new}
    got = evaluate_prompts(task, [PROMPT], split="test", show=8, **sizes)
    sess = session(RunSettings(task=task, **sizes))
    readout = readout_of(sess.task.answer_format, "choice", max_new)
    assert readout.chooses and [label for label, _ in readout.options("q")] == ["positive", "negative"]
    ids = tuple(sess.rt.encode_prompt(PROMPT))
    want = [_per_option_forward(sess.rt, readout, ex, ids, max_new) for ex in sess.splits.test]
    assert [ex["by_prompt"][0]["correct"] for ex in got["shown"]] == want  # example by example
    assert got["examples"] == 8 and got["readout"] == "choice" and got["max_new_tokens"] == max_new
    assert got["prompts"][0]["accuracy"] == pytest.approx(sum(want) / len(want))
    assert 0 < sum(want) < len(want), "every answer right or every answer wrong: the comparison is too weak"


def test_a_direct_answer_run_races_every_step_and_finishes(data_dir, tmp_path):
    task = f"jsonl:{data_dir / 'fsc' / 'sst-2.jsonl'}"
    settings = {**SMALL_RUN, "train": 8, "dev": 8, "test": 8, "max_new_tokens": 0, "refine": False}
    result = optimize(task, steps=2, run_dir=tmp_path, initial_prompt=PROMPT, **settings)
    assert result.steps == 2 and len(result.history) == 2
    for h in result.history:
        assert h["race_slices"][-1] == 8 and h["current"]["examples"] == 8
        assert h["candidates"] and all(c["examples"] in h["race_slices"] for c in h["candidates"])
        assert all(0 <= c["accuracy"] <= 1 and c["gold_logprob"] < 0 for c in h["candidates"])
    assert result.scores["baseline"]["test"] is not None and result.scores["best"]["dev"] is not None
