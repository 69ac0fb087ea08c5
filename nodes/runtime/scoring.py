"""Teacher-forced scoring and the gradient with respect to prompt positions.

The teacher-forced sequence per example is ``chat(question, prompt) | reasoning | extractor |
gold answer``. Its loss is the cross-entropy on the gold-answer tokens (logits / temperature) plus
a small weight times the prompt's mean negative log-likelihood, summed over examples.

GReaTer takes the gradient of that loss with respect to a one-hot vector over the candidate
tokens at the edited prompt position, where ``one_hot @ E[candidates]`` replaces that position's
embedding. Because the map is linear, the gradient for candidate ``c`` equals
``<dL/de, E[c]>`` plus the direct effect of ``c`` as the NLL *target* at that position,
``-log p(c | prefix) * weight / len(prompt)``. :func:`position_gradient` computes ``dL/de`` and
the next-token log-probabilities at the position in one forward and one backward pass, so the
candidate set can be chosen from that same forward and scored afterwards for free.
:func:`one_hot_loss` is the literal one-hot formulation; tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nodes.runtime.batching import pad, run_chunked
from nodes.runtime.runtime import Runtime


@dataclass(frozen=True)
class ForcedRow:
    """One teacher-forced sequence and where its prompt and answer tokens are."""

    ids: tuple[int, ...]
    prompt: tuple[int, int]
    answer: tuple[int, int]


def forced_row(
    context_ids: Sequence[int],
    prompt: tuple[int, int],
    reasoning: Sequence[int],
    extractor: Sequence[int],
    answer: Sequence[int],
) -> ForcedRow:
    ids = tuple(context_ids) + tuple(reasoning) + tuple(extractor)
    return ForcedRow(ids + tuple(answer), prompt, (len(ids), len(ids) + len(answer)))


@dataclass
class ForcedLosses:
    total: torch.Tensor  # scalar: sum over rows of answer CE + weight * prompt NLL (see module doc)
    answer_ce: torch.Tensor  # (B,) mean CE per row on the gold answer, at the temperature
    prompt_nll: torch.Tensor  # (B,) mean NLL per row of all prompt tokens, detached
    position_logprobs: torch.Tensor | None  # (B, V) log p(. | prefix) at the edited position


def _keep_mask(rows: Sequence[ForcedRow], width: int, device) -> torch.Tensor:
    """Positions whose logits are needed: those predicting a prompt token or an answer token."""
    keep = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, r in enumerate(rows):
        keep[b, max(r.prompt[0] - 1, 0) : r.prompt[1] - 1] = True
        keep[b, r.answer[0] - 1 : r.answer[1] - 1] = True
    return keep.to(device)


def forced_losses(
    rt: Runtime,
    rows: Sequence[ForcedRow],
    position: int | Sequence[int] | None,
    *,
    temperature: float,
    nll_weight: float,
    edit_embeds: torch.Tensor | None = None,
    soft_target: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ForcedLosses:
    """Loss of each row, with the embeddings at prompt ``position`` (one or several) optionally
    replaced.

    ``edit_embeds`` is (d,), (B, d) or, for several positions, (B, m, d). With
    ``soft_target = (candidate_ids, weights)`` (one position only) the NLL term at the position
    becomes ``-sum_c w_c log p(c | prefix)`` (the one-hot formulation); without it that term is left
    out of ``total`` because it does not depend on the position's embedding.
    """
    single = isinstance(position, int)
    positions = [position] if single else list(position or [])
    ids, mask = pad([r.ids for r in rows], rt.pad_id, "right", rt.device)
    embeds = rt.model.get_input_embeddings()(ids)
    if positions and edit_embeds is not None:
        m = len(positions)
        cols = torch.tensor([r.prompt[0] + p for r in rows for p in positions], device=rt.device)
        batch = torch.arange(len(rows), device=rt.device).repeat_interleave(m)
        values = edit_embeds.expand(len(rows), -1) if edit_embeds.dim() == 1 else edit_embeds
        embeds = embeds.index_put((batch, cols), values.reshape(len(rows) * m, -1).to(embeds.dtype))
    keep = _keep_mask(rows, ids.shape[1], rt.device)
    logits = rt.model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))

    total = logits.new_zeros(())
    answer_ce, prompt_nll, at_position = [], [], []
    offset = 0
    for r in rows:
        n_prompt = r.prompt[1] - max(r.prompt[0], 1)
        n_answer = r.answer[1] - r.answer[0]
        row_logits = logits[offset : offset + n_prompt + n_answer]
        offset += n_prompt + n_answer
        p_logits, a_logits = row_logits[:n_prompt], row_logits[n_prompt:]
        if n_answer:
            a_targets = torch.as_tensor(r.ids[r.answer[0] : r.answer[1]], device=rt.device)
            ce = torch.nn.functional.cross_entropy(a_logits / temperature, a_targets)
            total = total + ce
        else:
            ce = logits.new_zeros(())
        answer_ce.append(ce.detach())
        if n_prompt == 0:
            prompt_nll.append(torch.zeros((), device=rt.device))
            at_position.append(None)
            continue
        p_targets = torch.as_tensor(r.ids[r.prompt[1] - n_prompt : r.prompt[1]], device=rt.device)
        logp = torch.log_softmax(p_logits, dim=-1)
        token_nll = -logp.gather(1, p_targets[:, None])[:, 0]
        prompt_nll.append(token_nll.mean().detach())
        scale = nll_weight / n_prompt
        if not positions:
            total = total + scale * token_nll.sum()
            at_position.append(None)
            continue
        if soft_target is None:
            # the NLL of a token depends only on the embeddings before it, so keeping the edited
            # positions' own terms changes no embedding gradient; their dependence on the candidate
            # as a *target* is added analytically (PositionGradient.candidate_gradients)
            total = total + scale * token_nll.sum()
        else:
            others = torch.ones_like(token_nll, dtype=torch.bool)
            others[positions[0]] = False
            cand, weights = soft_target
            total = total + scale * token_nll[others].sum() - scale * (weights * logp[positions[0], cand]).sum()
        at_position.append(logp[positions[0]].detach() if single else logp[positions].detach())
    position_logprobs = torch.stack(at_position) if at_position and at_position[0] is not None else None
    return ForcedLosses(total, torch.stack(answer_ce), torch.stack(prompt_nll), position_logprobs)


@dataclass
class PositionGradient:
    embed_grad: torch.Tensor  # (d,) dL/de at the position, summed over rows
    position_logprobs: torch.Tensor  # (B, V) next-token log-probs at the position
    answer_ce: torch.Tensor  # (B,)
    prompt_nll: torch.Tensor  # (B,)
    prompt_len: int
    nll_weight: float

    def candidate_gradients(self, embedding_matrix: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Gradient of the summed loss w.r.t. the one-hot coordinate of each candidate."""
        through_embedding = embedding_matrix[candidates].to(self.embed_grad.dtype) @ self.embed_grad
        as_target = -self.position_logprobs[:, candidates].sum(0) * (self.nll_weight / self.prompt_len)
        return through_embedding.to(as_target.dtype) + as_target


def window_gradients(
    rt: Runtime, rows: Sequence[ForcedRow], positions: Sequence[int], *, temperature: float, nll_weight: float
) -> list[PositionGradient]:
    """The gradient at each of several prompt positions, from one forward and one backward over
    the whole batch at the current tokens."""
    emb = rt.model.get_input_embeddings()
    current = torch.tensor([[r.ids[r.prompt[0] + p] for p in positions] for r in rows], device=rt.device)
    leaf = emb(current).detach().requires_grad_(True)  # (B, m, d)
    with torch.enable_grad():
        out = forced_losses(rt, rows, list(positions), temperature=temperature, nll_weight=nll_weight, edit_embeds=leaf)
        with rt.usage.timed():
            out.total.backward()
    grads = leaf.grad.sum(0)  # (m, d)
    return [
        PositionGradient(
            embed_grad=grads[i],
            position_logprobs=out.position_logprobs[:, i],
            answer_ce=out.answer_ce,
            prompt_nll=out.prompt_nll,
            prompt_len=rows[0].prompt[1] - rows[0].prompt[0],
            nll_weight=nll_weight,
        )
        for i in range(len(positions))
    ]


def position_gradient(
    rt: Runtime, rows: Sequence[ForcedRow], position: int, *, temperature: float, nll_weight: float
) -> PositionGradient:
    """One forward and one backward over the whole batch at the current tokens."""
    return window_gradients(rt, rows, [position], temperature=temperature, nll_weight=nll_weight)[0]


def one_hot_loss(
    rt: Runtime,
    rows: Sequence[ForcedRow],
    position: int,
    candidates: torch.Tensor,
    weights: torch.Tensor,
    *,
    temperature: float,
    nll_weight: float,
) -> torch.Tensor:
    """The loss as a function of the one-hot over ``candidates`` (GReaTer's formulation)."""
    embeds = weights.to(rt.embedding_matrix.dtype) @ rt.embedding_matrix[candidates]
    return forced_losses(
        rt,
        rows,
        position,
        temperature=temperature,
        nll_weight=nll_weight,
        edit_embeds=embeds,
        soft_target=(candidates, weights),
    ).total


@torch.no_grad()
def prompt_nll(rt: Runtime, contexts: Sequence) -> list[float]:
    """Mean NLL of each context's prompt tokens given what precedes them (0 for empty prompts)."""

    def chunk(items):
        rows = [ForcedRow(tuple(c.ids), c.prompt, (len(c.ids), len(c.ids))) for c in items]
        with_prompt = [r for r in rows if r.prompt[1] > r.prompt[0]]
        if not with_prompt:
            return [0.0] * len(rows)
        out = forced_losses(rt, with_prompt, None, temperature=1.0, nll_weight=0.0).prompt_nll.tolist()
        it = iter(out)
        return [next(it) if r.prompt[1] > r.prompt[0] else 0.0 for r in rows]

    return run_chunked(list(contexts), chunk, rt.max_batch, key=lambda c: len(c.ids))
