"""Teacher-forced scoring and the gradient with respect to prompt positions.

The teacher-forced sequence per example is ``chat(question, prompt) | reasoning | extractor |
gold answer``. Its loss is the cross-entropy on the gold-answer tokens (logits / temperature) plus
a small weight times the prompt's mean negative log-likelihood, summed over examples.

GReaTer takes the gradient of that loss with respect to a one-hot vector over the candidate
tokens at the edited prompt position, where ``one_hot @ E[candidates]`` replaces that position's
embedding. Because the map is linear, the gradient for candidate ``c`` equals
``<dL/de, E[c]>`` plus the direct effect of ``c`` as the NLL *target* at that position,
``-log p(c | prefix) * weight / len(prompt)``. :func:`window_gradients` computes ``dL/de`` and
the next-token log-probabilities at each position in one forward and one backward pass, so the
candidate set can be chosen from that same forward and scored afterwards for free.
:func:`one_hot_loss` is the literal one-hot formulation; tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from gradprompt.nodes.runtime.batching import pad, run_chunked
from gradprompt.nodes.runtime.model_runtime import ModelRuntime


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


def _logits_from(rt: ModelRuntime, rows: Sequence[ForcedRow], positions: list[int], edit_embeds, prefix: bool):
    """Per row, the logits predicting its prompt tokens (from ``max(prompt[0], 1)`` on) and its
    answer tokens, with the embeddings at ``positions`` replaced.

    With ``prefix``, everything before the first edited position (with the prompt after the
    question: the whole question) runs once without gradient and only the rest runs with it:
    nothing before the edit depends on the edited embedding, so the loss and its gradient are
    the same, at a fraction of the backward pass and of the activations kept for it."""
    B = len(rows)
    split = [r.prompt[0] + min(positions) if positions and prefix else 0 for r in rows]
    if not all(split):
        split = [0] * B
    cache, pre_mask, pre_logits = None, torch.zeros((B, 0), dtype=torch.long, device=rt.device), [None] * B
    if split[0]:
        pre_ids, pre_mask = pad([r.ids[:s] for r, s in zip(rows, split, strict=True)], rt.pad_id, "left", rt.device)
        width = pre_ids.shape[1]
        keep = torch.zeros_like(pre_mask, dtype=torch.bool)
        for b, (r, s) in enumerate(zip(rows, split, strict=True)):
            keep[b, width - s + max(r.prompt[0], 1) - 1 :] = True
        with torch.no_grad():
            out = rt.model(
                input_ids=pre_ids,
                attention_mask=pre_mask,
                position_ids=(pre_mask.cumsum(1) - 1).clamp(min=0),
                cache=DynamicCache(config=rt.model.config),
                use_cache=True,
                logits_to_keep=keep,
            )
        cache, pre_logits = out.cache, list(torch.split(out.logits, keep.sum(1).tolist()))
    ids, mask = pad([r.ids[s:] for r, s in zip(rows, split, strict=True)], rt.pad_id, "right", rt.device)
    embeds = rt.model.get_input_embeddings()(ids)
    if positions and edit_embeds is not None:
        m = len(positions)
        cols = torch.tensor([r.prompt[0] + p - s for r, s in zip(rows, split, strict=True) for p in positions])
        batch = torch.arange(B).repeat_interleave(m)
        values = edit_embeds.expand(B, -1) if edit_embeds.dim() == 1 else edit_embeds
        embeds = embeds.index_put((batch.to(rt.device), cols.to(rt.device)), values.reshape(B * m, -1).to(embeds.dtype))
    keep = torch.zeros((B, ids.shape[1]), dtype=torch.bool)
    for b, (r, s) in enumerate(zip(rows, split, strict=True)):
        keep[b, max(max(r.prompt[0], 1) - 1 - s, 0) : max(r.prompt[1] - 1 - s, 0)] = True
        keep[b, r.answer[0] - 1 - s : r.answer[1] - 1 - s] = True
    keep = keep.to(rt.device)
    logits = rt.model(
        inputs_embeds=embeds,
        attention_mask=torch.cat([pre_mask, mask], dim=1),
        position_ids=pre_mask.sum(1, keepdim=True) + torch.arange(ids.shape[1], device=rt.device)[None, :],
        cache=cache,
        use_cache=cache is not None,
        logits_to_keep=keep,
    ).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    out, at = [], 0
    for b, r in enumerate(rows):
        n_prompt = r.prompt[1] - max(r.prompt[0], 1)
        n_answer = r.answer[1] - r.answer[0]
        n_here = int(keep[b].sum())
        here = logits[at : at + n_here]
        at += n_here
        before = pre_logits[b].to(logits.dtype) if pre_logits[b] is not None else here[:0]
        prompt_logits = torch.cat([before, here[: n_here - n_answer]])[:n_prompt]
        out.append((prompt_logits, here[n_here - n_answer :]))
    return out


def forced_losses(
    rt: ModelRuntime,
    rows: Sequence[ForcedRow],
    position: int | Sequence[int] | None,
    *,
    temperature: float,
    nll_weight: float,
    edit_embeds: torch.Tensor | None = None,
    soft_target: tuple[torch.Tensor, torch.Tensor] | None = None,
    prefix: bool = True,
) -> ForcedLosses:
    """Loss of each row, with the embeddings at prompt ``position`` (one or several) optionally
    replaced.

    ``edit_embeds`` is (d,), (B, d) or, for several positions, (B, m, d). With
    ``soft_target = (candidate_ids, weights)`` (one position only) the NLL term at the position
    becomes ``-sum_c w_c log p(c | prefix)`` (the one-hot formulation); without it that term is left
    out of ``total`` because it does not depend on the position's embedding. ``prefix=False`` runs
    the whole sequence with gradient (as the reference implementation does).
    """
    single = isinstance(position, int)
    positions = [position] if single else list(position or [])
    per_row = _logits_from(rt, rows, positions, edit_embeds, prefix)
    total = torch.zeros((), device=rt.device, dtype=torch.promote_types(rt.embedding_matrix.dtype, torch.float32))
    answer_ce, prompt_nll, at_position = [], [], []
    for r, (p_logits, a_logits) in zip(rows, per_row, strict=True):
        n_prompt = r.prompt[1] - max(r.prompt[0], 1)
        n_answer = r.answer[1] - r.answer[0]
        if n_answer:
            a_targets = torch.as_tensor(r.ids[r.answer[0] : r.answer[1]], device=rt.device)
            ce = torch.nn.functional.cross_entropy(a_logits / temperature, a_targets)
            total = total + ce
        else:
            ce = total.new_zeros(())
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


def token_chunks(rows: Sequence[ForcedRow], budget: int, skip: Sequence[int] | None = None) -> list[list[int]]:
    """Row indices in chunks whose padded size (rows x longest part that runs) stays within
    ``budget`` tokens, longest rows together: what bounds the activations a backward keeps is
    tokens, not rows. ``skip[i]`` tokens of row i run without gradient and do not count."""
    skip = skip or [0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids) - skip[i])
    chunks: list[list[int]] = []
    for i in order:
        n = len(rows[i].ids) - skip[i]
        if chunks and (len(chunks[-1]) + 1) * n <= budget:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def window_gradients(
    rt: ModelRuntime,
    rows: Sequence[ForcedRow],
    positions: Sequence[int],
    *,
    temperature: float,
    nll_weight: float,
    prefix: bool = True,
) -> list[PositionGradient]:
    """The gradient at each of several prompt positions at the current tokens: a forward and a
    backward per chunk of rows (chunks sized by tokens), the gradients summed. With ``prefix``
    only the part from the first position on runs with gradient (see :func:`forced_losses`)."""
    emb = rt.model.get_input_embeddings()
    skip = [r.prompt[0] + min(positions) for r in rows] if prefix else None
    grads = None
    logprobs, answer_ce, nll = [None] * len(rows), [None] * len(rows), [None] * len(rows)
    for chunk in token_chunks(rows, rt.grad_batch_tokens, skip):
        part = [rows[i] for i in chunk]
        current = torch.tensor([[r.ids[r.prompt[0] + p] for p in positions] for r in part], device=rt.device)
        leaf = emb(current).detach().requires_grad_(True)  # (b, m, d)
        with torch.enable_grad():
            out = forced_losses(
                rt,
                part,
                list(positions),
                temperature=temperature,
                nll_weight=nll_weight,
                edit_embeds=leaf,
                prefix=prefix,
            )
            with rt.usage.timed():
                out.total.backward()
        grads = leaf.grad.sum(0) if grads is None else grads + leaf.grad.sum(0)  # (m, d)
        for j, i in enumerate(chunk):
            logprobs[i], answer_ce[i], nll[i] = out.position_logprobs[j], out.answer_ce[j], out.prompt_nll[j]
    position_logprobs = torch.stack(logprobs)  # (B, m, V)
    return [
        PositionGradient(
            embed_grad=grads[i],
            position_logprobs=position_logprobs[:, i],
            answer_ce=torch.stack(answer_ce),
            prompt_nll=torch.stack(nll),
            prompt_len=rows[0].prompt[1] - rows[0].prompt[0],
            nll_weight=nll_weight,
        )
        for i in range(len(positions))
    ]


def one_hot_loss(
    rt: ModelRuntime,
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
def prompt_nll(rt: ModelRuntime, contexts: Sequence) -> list[float]:
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


@torch.no_grad()
def reading_nll(rt: ModelRuntime, prompts: Sequence[Sequence[int]]) -> list[float]:
    """NLL of each prompt read on its own as a whole user's message: its tokens and the end of the
    message after them.

    A whole-prompt figure, so an edit that reads well on its left but breaks the words after it
    costs what it breaks, and a prompt that stops mid-phrase ("What do people of") pays for ending
    there; the question is left out so the figure is the prompt's, not the task's."""

    def chunk(items):
        contexts = [rt.reading_layout.encode("", tuple(p)) for p in items]
        seqs = [c.ids[: c.prompt[1] + 1] for c in contexts]
        ids, mask = pad(seqs, rt.pad_id, "right", rt.device)
        logp = torch.log_softmax(rt.model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), -1)
        out = []
        for row, (c, seq) in enumerate(zip(contexts, seqs, strict=True)):
            at = torch.arange(c.prompt[0], len(seq), device=rt.device)
            out.append(-float(logp[row, at - 1, ids[row, at]].sum()))
        return out

    return run_chunked(list(prompts), chunk, rt.max_batch, key=len)


def fluency_costs(rt: ModelRuntime, current: Sequence[int], prompts: Sequence[Sequence[int]]) -> list[float]:
    """What each prompt adds to ``current``'s :func:`reading_nll` (negative: it reads better), in
    one batched call; the figure every source's fluency limit compares."""
    nll = reading_nll(rt, [tuple(current), *(tuple(p) for p in prompts)])
    return [round(c - nll[0], 3) for c in nll[1:]]
