"""The bfloat16-first greedy head returns the float32 argmax exactly, near-ties included."""

from __future__ import annotations

import pytest
import torch

from gradprompt.nodes.runtime.greedy_head import GreedyHead, greedy_head


def _near_ties(vocab: int, dim: int, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Output rows in small clusters of near-copies, so the largest logits differ by less than
    bfloat16 can resolve, and hidden states of a decoder's scale."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(vocab // 8, dim, generator=g)
    weight = centres.repeat_interleave(8, dim=0) + 1e-3 * torch.randn(vocab, dim, generator=g)
    hidden = 30 * torch.randn(rows, dim, generator=g)
    return weight, hidden


def _within_float32_rounding(hidden, weight, bias, chosen) -> torch.Tensor:
    """Per row, whether the chosen token's logit, computed in float64, is within float32 summation
    rounding of the largest: where two logits are closer than that, float32 itself gives either
    token depending on the order it sums in (the plain matmul changes order with the batch)."""
    exact = hidden.double() @ weight.double().T + (0 if bias is None else bias.double())
    slack = 4 * weight.shape[1] * 2.0**-24 * hidden.double().norm(dim=-1) * weight.double().norm(dim=-1).max()
    return exact.gather(1, chosen[:, None])[:, 0] >= exact.max(-1).values - slack


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_argmax_is_the_float32_one_where_bfloat16_alone_is_wrong(bias, seed):
    weight, hidden = _near_ties(4096, 64, 256, seed)
    b = 1e-3 * torch.randn(4096, generator=torch.Generator().manual_seed(seed)) if bias else None
    rough = (hidden.bfloat16() @ weight.bfloat16().T).float() + (0 if b is None else b)
    assert (~_within_float32_rounding(hidden, weight, b, rough.argmax(-1))).sum() >= 10  # bfloat16 alone is wrong
    chosen = GreedyHead(weight, b).argmax(hidden)
    assert bool(_within_float32_rounding(hidden, weight, b, chosen).all())
    # and where float32 is unambiguous it is exactly float32's token
    plain = (hidden @ weight.T + (0 if b is None else b)).argmax(-1)
    clear = _within_float32_rounding(hidden, weight, b, chosen) & ~_ambiguous(hidden, weight, b)
    assert torch.equal(chosen[clear], plain[clear]) and clear.sum() > 128


def _ambiguous(hidden, weight, bias) -> torch.Tensor:
    """Rows whose two largest float64 logits are within float32 summation rounding."""
    exact = hidden.double() @ weight.double().T + (0 if bias is None else bias.double())
    slack = 4 * weight.shape[1] * 2.0**-24 * hidden.double().norm(dim=-1) * weight.double().norm(dim=-1).max()
    top = exact.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1] < slack


def test_ties_go_to_the_lowest_index_and_empty_input_gives_nothing():
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    head = GreedyHead(weight, None)
    assert head.argmax(torch.tensor([[2.0, 1.0], [1.0, 3.0]])).tolist() == [0, 1]
    assert head.argmax(torch.zeros(0, 2)).tolist() == []


def test_a_nan_hidden_state_takes_the_full_pass():
    weight = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    hidden = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    hidden[1, 2] = float("nan")
    assert torch.equal(GreedyHead(weight, None).argmax(hidden), (hidden @ weight.T).argmax(-1))


def test_the_tiny_model_decodes_alike_with_and_without_it(tiny_rt, monkeypatch):
    """The decode with the head (where this machine has fast bfloat16) gives the tokens the plain
    float32 output layer gives."""
    import gradprompt.nodes.runtime.greedy_head as gh
    from gradprompt.nodes.runtime.decoding import DecodeJob
    from gradprompt.nodes.tasks import builtin_task

    rt = tiny_rt
    contexts = rt.contexts([e.question for e in builtin_task("compare").examples[:6]], rt.encode_prompt("Think."))
    extractor = rt.layout.text_ids("\nTherefore, the final answer is")
    jobs = [DecodeJob(c.ids, c.prompt, extractor, ()) for c in contexts]
    with_head = rt.reason_and_answer(jobs, 24, 5)
    monkeypatch.setattr(gh, "_HEADS", gh.weakref.WeakKeyDictionary())
    monkeypatch.setattr(gh, "_fast_bfloat16", lambda device: False)
    assert greedy_head(rt.model) is None
    plain = rt.reason_and_answer(jobs, 24, 5)
    assert [(o.reasoning, o.answer) for o in with_head] == [(o.reasoning, o.answer) for o in plain]
