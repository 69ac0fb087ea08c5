"""The one-hot gradient and the batched computations, on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from gradprompt.nodes.runtime.scoring import forced_losses, forced_row, one_hot_loss, window_gradients
from gradprompt.nodes.tasks import builtin_task

QUESTIONS = [e.question for e in builtin_task("compare").examples[:4]]
PROMPT = "Let's think step by step."
SETTINGS = {"temperature": 0.2, "nll_weight": 0.2}


def _rows(rt, prompt_ids, reasoning_len=12):
    """Teacher-forced rows with the model's own greedy reasoning, as the step builds them
    (``reasoning_len`` 0: direct answers, read right after the question and the prompt)."""
    contexts = rt.contexts(QUESTIONS, prompt_ids)
    if reasoning_len:
        reasonings = rt.generate([c.ids for c in contexts], reasoning_len)
        extractor = rt.layout.text_ids("\nTherefore, the final answer (Yes or No) is")
    else:
        reasonings, extractor = [()] * len(contexts), rt.layout.text_ids("The answer is")
    answers = [rt.layout.text_ids(" Yes"), rt.layout.text_ids(" No")]
    return [
        forced_row(c.ids, c.prompt, r, extractor, answers[i % 2])
        for i, (c, r) in enumerate(zip(contexts, reasonings, strict=True))
    ]


def _candidates(rt, current):
    others = [t for t in range(20, 400, 37) if t != current]
    return torch.tensor([current, *others[:7]])


@pytest.mark.parametrize("position", [0, 3])
def test_fused_gradient_equals_one_hot_autograd(tiny_rt64, position):
    rt = tiny_rt64
    prompt = tuple(rt.encode_prompt(PROMPT))
    rows = _rows(rt, prompt)
    cands = _candidates(rt, prompt[position])
    fused = window_gradients(rt, rows, [position], **SETTINGS)[0].candidate_gradients(rt.embedding_matrix, cands)

    weights = torch.zeros(len(cands), dtype=torch.float64)
    weights[0] = 1.0
    weights.requires_grad_(True)
    with torch.enable_grad():
        one_hot_loss(rt, rows, position, cands, weights, **SETTINGS).backward()
    torch.testing.assert_close(fused, weights.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reasoning_len", [12, 0])
def test_gradient_matches_finite_difference_along_interpolation(tiny_rt64, reasoning_len):
    """d/dt L((1-t) onehot(current) + t onehot(c)) at t=0 equals grad_c - grad_current, through
    the model's reasoning and, in direct mode, over question and prompt alone."""
    rt = tiny_rt64
    prompt = tuple(rt.encode_prompt(PROMPT))
    position = 2
    rows = _rows(rt, prompt, reasoning_len)
    cands = _candidates(rt, prompt[position])
    grads = window_gradients(rt, rows, [position], **SETTINGS)[0].candidate_gradients(rt.embedding_matrix, cands)
    eps = 1e-5
    base = torch.zeros(len(cands), dtype=torch.float64)
    base[0] = 1.0
    spread = grads.max() - grads.min()
    assert spread > 1e-3, "the test model gives no gradient signal to compare"
    for j in range(1, len(cands)):
        direction = -base.clone()
        direction[j] += 1.0
        with torch.no_grad():
            up = one_hot_loss(rt, rows, position, cands, base + eps * direction, **SETTINGS)
            down = one_hot_loss(rt, rows, position, cands, base - eps * direction, **SETTINGS)
        fd = (up - down) / (2 * eps)
        assert fd.item() == pytest.approx((grads[j] - grads[0]).item(), rel=1e-6, abs=1e-8)


def test_batched_losses_and_gradients_equal_one_at_a_time(tiny_rt):
    rt = tiny_rt
    prompt = tuple(rt.encode_prompt(PROMPT))
    rows = _rows(rt, prompt)
    assert len({len(r.ids) for r in rows}) > 1, "rows must differ in length to exercise padding"
    position = 1
    batched = window_gradients(rt, rows, [position], **SETTINGS)[0]
    singles = [window_gradients(rt, [r], [position], **SETTINGS)[0] for r in rows]
    torch.testing.assert_close(batched.answer_ce, torch.cat([s.answer_ce for s in singles]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched.prompt_nll, torch.cat([s.prompt_nll for s in singles]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        batched.embed_grad, torch.stack([s.embed_grad for s in singles]).sum(0), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        batched.position_logprobs, torch.cat([s.position_logprobs for s in singles]), rtol=1e-4, atol=1e-4
    )


def test_loss_only_counts_answer_tokens(tiny_rt):
    """Changing the reasoning changes the loss; the answer CE is taken on gold tokens only."""
    rt = tiny_rt
    prompt = tuple(rt.encode_prompt(PROMPT))
    row = _rows(rt, prompt)[0]
    n_answer = row.answer[1] - row.answer[0]
    out = forced_losses(rt, [row], None, temperature=1.0, nll_weight=0.0)
    ids, _ = row.ids, None
    logits = rt.model(input_ids=torch.tensor([ids])).logits[0]
    targets = torch.tensor(ids[row.answer[0] : row.answer[1]])
    manual = torch.nn.functional.cross_entropy(logits[row.answer[0] - 1 : row.answer[1] - 1], targets)
    assert n_answer >= 1
    torch.testing.assert_close(out.total, manual, rtol=1e-5, atol=1e-6)
    # the loss is taken through the reasoning: the same row with other reasoning tokens has another loss
    context = rt.contexts(QUESTIONS[:1], prompt)[0]
    extractor = rt.layout.text_ids("\nTherefore, the final answer (Yes or No) is")
    reasoning = row.ids[len(context.ids) : row.answer[0] - len(extractor)]
    assert reasoning and row.ids[: len(context.ids)] == tuple(context.ids)
    other = tuple(20 + (t + 7) % 300 for t in reasoning)
    changed = forced_row(context.ids, context.prompt, other, extractor, row.ids[row.answer[0] : row.answer[1]])
    out_other = forced_losses(rt, [changed], None, temperature=1.0, nll_weight=0.0)
    assert abs(float(out_other.total) - float(out.total)) > 1e-4


@pytest.mark.parametrize("placement", ["after", "system"])
def test_each_loss_term_equals_one_plain_forward_pass(tiny_rt64, placement):
    """The answer cross-entropy at the temperature, the prompt NLL from the prompt's second token
    on (the first has nothing before it when the prompt opens the sequence), and the total that
    weighs them, each from the model's plain logits: no code shared with ``forced_losses``."""
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    rt = ModelRuntime(tiny_rt64.loaded, placement)
    rows = _rows(rt, tuple(rt.encode_prompt(PROMPT)))
    temperature, weight = 0.7, 0.3
    out = forced_losses(rt, rows, None, temperature=temperature, nll_weight=weight)
    ces, nlls = [], []
    for row in rows:
        logits = rt.model(input_ids=torch.tensor([row.ids])).logits[0]
        logp, scaled = torch.log_softmax(logits, -1), torch.log_softmax(logits / temperature, -1)
        a0, a1 = row.answer
        ces.append(-sum(scaled[t - 1, row.ids[t]] for t in range(a0, a1)) / (a1 - a0))
        first = max(row.prompt[0], 1)
        nlls.append(-sum(logp[t - 1, row.ids[t]] for t in range(first, row.prompt[1])) / (row.prompt[1] - first))
    assert all(row.prompt[1] - row.prompt[0] > 1 for row in rows)
    torch.testing.assert_close(out.answer_ce, torch.stack(ces), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out.prompt_nll, torch.stack(nlls), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out.total, sum(ces) + weight * sum(nlls), rtol=1e-6, atol=1e-8)


def test_batched_generation_equals_one_at_a_time(tiny_rt):
    rt = tiny_rt
    contexts = rt.contexts(QUESTIONS, rt.encode_prompt(PROMPT))
    seqs = [c.ids for c in contexts]
    batched = rt.generate(seqs, 16)
    singles = [rt.generate([s], 16)[0] for s in seqs]
    assert batched == singles
    assert len(set(batched)) > 1, "the generations should differ between questions"


def test_window_gradients_equal_one_position_at_a_time(tiny_rt64):
    from gradprompt.nodes.runtime.scoring import window_gradients

    rt = tiny_rt64
    prompt = tuple(rt.encode_prompt(PROMPT))
    rows = _rows(rt, prompt)
    window = window_gradients(rt, rows, [1, 2, 4], **SETTINGS)
    for pos, got in zip([1, 2, 4], window, strict=True):
        alone = window_gradients(rt, rows, [pos], **SETTINGS)[0]
        torch.testing.assert_close(got.embed_grad, alone.embed_grad, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(got.position_logprobs, alone.position_logprobs)
        cands = _candidates(rt, prompt[pos])
        torch.testing.assert_close(
            got.candidate_gradients(rt.embedding_matrix, cands), alone.candidate_gradients(rt.embedding_matrix, cands)
        )


@pytest.mark.parametrize("reasoning_len", [12, 0])
@pytest.mark.parametrize("placement", ["after", "before", "system"])
@pytest.mark.parametrize("positions", [[0], [2], [1, 2, 3]])
def test_prefix_cached_gradient_equals_the_whole_sequence(placement, positions, reasoning_len):
    """Running only the part from the edited position with gradient (the rest once, without)
    and in token-sized chunks gives the same losses, log-probabilities and gradients as one
    forward and backward over whole sequences, for every placement."""
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.model_runtime import ModelRuntime
    from gradprompt.nodes.runtime.scoring import token_chunks, window_gradients

    rt = ModelRuntime(tiny_loaded(dtype=torch.float64), placement)
    prompt = tuple(rt.encode_prompt(PROMPT))
    rows = _rows(rt, prompt, reasoning_len)
    whole = window_gradients(rt, rows, positions, **SETTINGS, prefix=False)
    rt.grad_batch_tokens = 2 * max(len(r.ids) for r in rows)  # forces several chunks
    assert len(token_chunks(rows, rt.grad_batch_tokens)) > 1
    cached = window_gradients(rt, rows, positions, **SETTINGS, prefix=True)
    for w, c in zip(whole, cached, strict=True):
        torch.testing.assert_close(c.embed_grad, w.embed_grad, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(c.position_logprobs, w.position_logprobs, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(c.answer_ce, w.answer_ce, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(c.prompt_nll, w.prompt_nll, rtol=1e-9, atol=1e-10)
    assert whole[0].embed_grad.abs().sum() > 0
    cands = _candidates(rt, prompt[positions[0]])
    weights = torch.zeros(len(cands), dtype=torch.float64)
    weights[0] = 1.0
    weights.requires_grad_(True)
    if len(positions) == 1:  # the literal one-hot loss, prefix-cached, still agrees
        with torch.enable_grad():
            one_hot_loss(rt, rows, positions[0], cands, weights, **SETTINGS).backward()
        torch.testing.assert_close(
            cached[0].candidate_gradients(rt.embedding_matrix, cands), weights.grad, rtol=1e-8, atol=1e-9
        )
