"""GReaTer's candidate rule on constructed distributions, and the batching every model call goes
through: chunks of at most ``max_batch`` rows, halved on out-of-memory, results in input order."""

from __future__ import annotations

import random

import pytest
import torch

from gradprompt.nodes.runtime.batching import run_chunked
from gradprompt.nodes.runtime.candidates import propose_candidates

V = 8


def _logprobs(scores: list[dict[int, float]]) -> torch.Tensor:
    """Log-probabilities over ``V`` tokens from a few raised scores per example (the rest 0)."""
    raw = torch.zeros(len(scores), V)
    for row, raised in enumerate(scores):
        for token, value in raised.items():
            raw[row, token] = value
    return raw.log_softmax(1)


# examples 0 and 1 share token 1 in their top 2, examples 2 and 3 share token 4; token 4 has the larger
# summed log-probability over all four examples
CASE = _logprobs([{1: 5, 2: 4}, {1: 5, 3: 3}, {4: 10, 5: 9}, {4: 10, 6: 9}])
GROUPS = [[0, 1], [2, 3]]
ALL = torch.ones(V, dtype=torch.bool)


def test_candidates_are_the_top_k_shared_within_a_group_ranked_by_summed_probability():
    assert propose_candidates(CASE, ALL, [], top_k=2, groups=GROUPS, min_count=1) == [4, 1]


def test_one_group_keeps_only_what_every_example_in_it_ranks_high():
    assert propose_candidates(CASE, ALL, [], top_k=2, groups=[[0, 1, 2, 3]], min_count=0) == []
    assert propose_candidates(CASE, ALL, [], top_k=2, groups=[[0], [1]], min_count=1) == [1, 2, 3]


def test_banned_and_disallowed_tokens_never_come_back():
    assert propose_candidates(CASE, ALL, [4], top_k=2, groups=GROUPS, min_count=1) == [1]
    allowed = ALL.clone()
    allowed[1] = False
    assert propose_candidates(CASE, allowed, [], top_k=2, groups=GROUPS, min_count=1) == [4]


def test_too_few_candidates_widen_k_until_the_vocabulary_runs_out():
    widened = propose_candidates(CASE, ALL, [], top_k=2, groups=GROUPS, min_count=3)
    assert len(widened) >= 3 and widened[:2] == [4, 1]
    everything = propose_candidates(CASE, ALL, [0], top_k=2, groups=GROUPS, min_count=99)
    assert sorted(everything) == list(range(1, V))  # k reached V: every usable token, once


def _by_sets(logprobs: torch.Tensor, allowed, banned, top_k: int, groups, min_count: int) -> list[int]:
    """The rule written with Python sets, for random cases."""
    n_vocab = logprobs.shape[1]
    k = top_k
    while True:
        tops = [set(logprobs[r].topk(min(k, n_vocab)).indices.tolist()) for r in range(len(logprobs))]
        shared = set().union(*(set.intersection(*(tops[r] for r in g)) for g in groups))
        chosen = [t for t in shared if allowed[t] and t not in banned]
        if len(chosen) >= min_count or k >= n_vocab:
            break
        k *= 2
    return sorted(chosen, key=lambda t: -float(logprobs[:, t].sum()))


@pytest.mark.parametrize("seed", range(30))
def test_the_rule_matches_its_set_form_on_random_distributions(seed):
    rng = random.Random(seed)
    n, vocab = rng.randint(2, 6), rng.randint(5, 40)
    gen = torch.Generator().manual_seed(seed)
    logprobs = torch.randn(n, vocab, generator=gen).mul(3).log_softmax(1)
    allowed = torch.rand(vocab, generator=gen) > 0.2
    banned = set(rng.sample(range(vocab), 2))
    rows = list(range(n))
    rng.shuffle(rows)
    cut = rng.randint(1, n - 1)
    groups = [rows[:cut], rows[cut:]]
    top_k, min_count = rng.randint(1, 4), rng.randint(0, 6)
    got = propose_candidates(logprobs, allowed, banned, top_k=top_k, groups=groups, min_count=min_count)
    assert got == _by_sets(logprobs, allowed, banned, top_k, groups, min_count)


def test_chunks_are_halved_on_out_of_memory_and_results_keep_their_order():
    sizes: list[int] = []

    def fn(chunk: list[str]) -> list[str]:
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return [s.upper() for s in chunk]

    items = ["ccc", "a", "bbbb", "dd", "e", "ffffff", "gg"]
    assert run_chunked(items, fn, max_batch=4, key=len) == [s.upper() for s in items]
    assert sizes[:2] == [4, 2] and max(sizes[1:]) == 2 and sum(s for s in sizes if s <= 2) == len(items)


def test_out_of_memory_on_one_row_is_raised():
    def fn(chunk):
        raise torch.cuda.OutOfMemoryError("out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_chunked([1, 2, 3], fn, max_batch=2)


def test_decoding_in_chunks_of_two_gives_what_one_batch_gives(tiny_rt, monkeypatch):
    seqs = [tiny_rt.encode_prompt(q) for q in ("12 vs 7?", "3 or 30, which is larger?", "5 and 6", "100 vs 99")]
    whole = tiny_rt.generate(seqs, 4)
    calls: list[int] = []
    original = tiny_rt._generate_chunk

    def counted(chunk, max_new_tokens):
        calls.append(len(chunk))
        return original(chunk, max_new_tokens)

    monkeypatch.setattr(tiny_rt, "max_batch", 2)
    monkeypatch.setattr(tiny_rt, "_generate_chunk", counted)
    assert tiny_rt.generate(seqs, 4) == whole
    assert calls == [2, 2]
