"""Time one GReaTer step on the bundled model, batched against a naive one-example-at-a-time step.

The naive step does what the reference implementation does: for every example on its own, it
generates the reasoning, then generates the answer from a fresh prefill; it takes the proposal
distribution and the one-hot gradient with one forward and one backward per example; and it
evaluates each candidate prompt by regenerating example by example. The batched step is
gradprompt's: one decode over all examples (and, for evaluation, all candidates x examples) on one
KV cache, drafts from the current reasoning, and one forward + backward for the whole minibatch.

Both produce the same candidates and scores (checked at the end of each run); the table reports
medians over repeats and the ratio. The last line reads ``speedup: X.X`` (naive / batched).

    python benchmarks/step_speed.py [--examples 8] [--max-new-tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from nodes.greater import Proposal, Rollout, choose, forced_rows, propose, rollout
from nodes.runtime.candidates import example_groups, propose_candidates
from nodes.runtime.runtime import Runtime
from nodes.runtime.scoring import one_hot_loss
from nodes.settings import StepSettings
from nodes.tasks import builtin_task

PHASES = ("reason", "propose+gradient", "evaluate")


class CallCounter:
    """Counts forward calls of the model (each generate step is one call)."""

    def __init__(self, model: torch.nn.Module):
        self.calls = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


@contextmanager
def timed(times: dict[str, float], calls: dict[str, int], phase: str, counter: CallCounter):
    start, before = time.perf_counter(), counter.calls
    yield
    times[phase] = time.perf_counter() - start
    calls[phase] = counter.calls - before


# ----- the naive step ---------------------------------------------------------------------------


def naive_rollout(rt: Runtime, fmt, examples, prompt, max_new: int) -> Rollout:
    reasonings, answers, correct, nlls = [], [], [], []
    for ex in examples:
        ctx = rt.layout.encode(ex.question, prompt)
        reasoning = rt.generate([ctx.ids], max_new)[0]
        extractor = rt.extractor_ids(fmt.extractor(ex.question))
        answer = rt.generate([ctx.ids + reasoning + extractor], fmt.max_answer_tokens)[0]
        text = rt.tokenizer.decode(answer, skip_special_tokens=True)
        with torch.no_grad():
            logits = rt.model(input_ids=torch.tensor([ctx.ids], device=rt.device)).logits[0]
        logp = torch.log_softmax(logits[ctx.prompt[0] - 1 : ctx.prompt[1] - 1].float(), -1)
        targets = torch.tensor(ctx.ids[ctx.prompt[0] : ctx.prompt[1]], device=rt.device)
        nlls.append(float(-logp.gather(1, targets[:, None]).mean()))
        reasonings.append(reasoning)
        answers.append(text)
        correct.append(fmt.is_correct(text, ex.answer, ex.question))
    return Rollout(tuple(prompt), reasonings, answers, correct, sum(nlls) / len(nlls))


def naive_propose(rt, fmt, settings, examples, prompt, position, reasonings, rng) -> Proposal:
    groups = example_groups(len(examples), settings.group_size, settings.n_groups, rng)
    rows = forced_rows(rt, fmt, examples, prompt, reasonings)
    dists = []
    for ex in examples:
        ctx = rt.layout.encode(ex.question, prompt)
        with torch.no_grad():
            logits = rt.model(input_ids=torch.tensor([ctx.ids], device=rt.device)).logits[0]
        dists.append(torch.log_softmax(logits[ctx.prompt[0] + position - 1].float(), -1))
    current = prompt[position]
    banned = [prompt[position - 1]] if position > 0 else []
    cands = propose_candidates(
        torch.stack(dists),
        rt.allowed_tokens,
        banned,
        top_k=settings.top_k,
        groups=groups,
        min_count=2 * settings.n_evaluate,
    )
    if current not in cands:
        cands.append(current)
    cand_t = torch.tensor(cands, device=rt.device)
    total = torch.zeros(len(cands), dtype=torch.float32, device=rt.device)
    for row in rows:
        weights = torch.zeros(len(cands), device=rt.device)
        weights[cands.index(current)] = 1.0
        weights.requires_grad_(True)
        with torch.enable_grad():
            loss = one_hot_loss(
                rt,
                [row],
                position,
                cand_t,
                weights,
                temperature=settings.temperature,
                nll_weight=settings.grad_nll_weight,
            )
            loss.backward()
        total += weights.grad
    values = total.tolist()
    ranked = [c for _, c in sorted(zip(values, cands, strict=True), key=lambda vc: vc[0])]
    return Proposal(position, current, tuple(prompt), cands, values, ranked)


def naive_evaluate(rt, fmt, settings, examples, proposal, current_rollout):
    top = [proposal.prompt_with(t) for t in proposal.ranked[: settings.n_evaluate]]
    return [(p, naive_rollout(rt, fmt, examples, p, settings.max_new_tokens)) for p in top]


# ----- one step each way ------------------------------------------------------------------------


def run_step(rt, fmt, settings, examples, prompt, counter, naive: bool):
    times: dict[str, float] = {}
    calls: dict[str, int] = {}
    position = 1
    with timed(times, calls, "reason", counter):
        if naive:
            current = naive_rollout(rt, fmt, examples, prompt, settings.max_new_tokens)
        else:
            current = rollout(rt, fmt, examples, [prompt], settings.max_new_tokens)[0]
    with timed(times, calls, "propose+gradient", counter):
        fn: Callable = naive_propose if naive else propose
        proposal = fn(rt, fmt, settings, examples, prompt, position, current.reasonings, random.Random(0))
    with timed(times, calls, "evaluate", counter):
        if naive:
            evaluated = naive_evaluate(rt, fmt, settings, examples, proposal, current)
        else:
            evaluated = choose(rt, fmt, settings, examples, proposal, current).evaluated
    scores = {p: round(r.score(settings.score_nll_weight), 4) for p, r in evaluated}
    return times, calls, proposal, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="compare", help="built-in task name")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rt = Runtime.from_spec(args.model)
    counter = CallCounter(rt.model)
    task = builtin_task(args.task)
    settings = StepSettings(batch_size=args.examples, max_new_tokens=args.max_new_tokens, n_evaluate=args.candidates)
    examples = task.split(0, 100, 10, 10).train[: args.examples]
    prompt = tuple(rt.encode_prompt("Let's think step by step."))
    rt.allowed_tokens  # noqa: B018 - computed once per process, not part of a step

    results = {"naive": [], "batched": []}
    checks = []
    for rep in range(args.repeats):
        for kind in ("batched", "naive"):
            times, calls, proposal, scores = run_step(
                rt, task.answer_format, settings, examples, prompt, counter, naive=kind == "naive"
            )
            results[kind].append((times, calls))
            checks.append((kind, proposal.ranked[: args.candidates], scores))
            print(f"repeat {rep + 1} {kind:7s} " + "  ".join(f"{p} {times[p]:.1f}s" for p in PHASES), flush=True)

    batched_top = [c for k, c, _ in checks if k == "batched"]
    naive_top = [c for k, c, _ in checks if k == "naive"]
    same_candidates = batched_top[0] == naive_top[0]
    same_scores = all(
        abs(a - b) < 1e-3
        for (_, _, sa), (_, _, sb) in zip(checks[0::2], checks[1::2], strict=True)
        for a, b in zip(sorted(sa.values()), sorted(sb.values()), strict=True)
    )

    def median(kind: str, phase: str) -> float:
        return statistics.median(t[phase] for t, _ in results[kind])

    def total(kind: str) -> float:
        return statistics.median(sum(t.values()) for t, _ in results[kind])

    print()
    print(
        f"model {args.model}, {args.examples} examples, {args.max_new_tokens} reasoning tokens, "
        f"{args.candidates} candidates, {args.repeats} repeats, {torch.get_num_threads()} threads on "
        f"{rt.device.type}"
    )
    print(f"same top candidates: {same_candidates}; same candidate scores: {same_scores}")
    print()
    print("| phase | naive (s) | batched (s) | ratio | naive model calls | batched model calls |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in PHASES:
        n, b = median("naive", p), median("batched", p)
        nc, bc = results["naive"][0][1][p], results["batched"][0][1][p]
        print(f"| {p} | {n:.1f} | {b:.1f} | {n / b:.1f}x | {nc} | {bc} |")
    n, b = total("naive"), total("batched")
    print(f"| step | {n:.1f} | {b:.1f} | {n / b:.1f}x | | |")
    print(f"speedup: {n / b:.1f}")


if __name__ == "__main__":
    main()
