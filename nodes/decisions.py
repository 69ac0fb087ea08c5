"""How a prompt gets chosen: every decision of the search that rests on measured answers.

Read this module to see the rules; the graph nodes only call it.

1. **Racing** (:func:`race`). A step's candidates are scored on growing slices of a fixed selection
   pool (the run's training split, in one order fixed by the seed), always on the same examples as
   the current prompt, whose results on the whole pool are known. After each slice a candidate is
   dropped when an exact one-sided paired test (McNemar: a binomial test on the examples where the
   two disagree) says it is behind the current prompt, or behind the slice's leader, at level
   ``race_alpha``. Survivors go on to the next slice; the last slice is the whole pool, and a
   candidate that runs it is a finisher whatever its score (acceptance judges finishers).
2. **Acceptance** (:func:`accept`). The best survivor on the whole pool (most examples right, then
   the higher mean gold-answer log-probability, a continuous signal measured on the same examples)
   replaces the current prompt under the rule ``always`` (the default and the GReaTer authors': move
   to the best candidate), ``not_worse`` (move unless it is worse than the current prompt on the pool: fewer
   right, or as many right with a lower gold log-probability) or ``better`` (move only when it
   gets more examples right).
3. **The best-prompt list** (:func:`update_best`) holds only prompts scored on the whole pool, so
   its ranking compares like with like; patience counts steps since its top accuracy last rose.
4. **The final choice** (:func:`final_choice`). The top prompts of that list (the search's and the
   baselines that ran the whole pool) are scored on the dev split next to the initial prompt, in
   their pool rank: an order fixed without looking at dev. By default (``shared_alpha``) the
   search's start and the search's own prompts, in that order, are each tested at half of
   ``final_alpha`` with exact one-sided McNemar tests, a passed test handing its level on (a
   graphical procedure: the family-wise error stays at ``final_alpha``), and the dev-best of those
   that passed replaces the initial prompt. Otherwise the initial prompt is kept, and the result
   says why. A plain fixed sequence, Bonferroni on the dev leader and a test on the per-example
   gold margin are the other rules (``final_rule``).

Prompts are compared by :func:`rank_key`, on the same examples only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from scipy.stats import binomtest

from gradprompt.nodes.prompt_ids import PromptIds
from gradprompt.nodes.tasks.confidence import Z95

Acceptance = Literal["always", "not_worse", "better"]


@dataclass(frozen=True)
class Outcome:
    """One prompt on one example: what a rollout tells the search."""

    correct: bool
    gold_logprob: float  # log p(gold answer | question, prompt, own reasoning, extractor)
    nll: float  # mean NLL of the prompt's tokens in this example's context
    reasoning: tuple[int, ...] = ()
    answer: str = ""
    margin: float | None = None  # log p(gold) - best other allowed answer's log p (closed answer sets)

    def to_json(self) -> dict:
        return {
            "correct": self.correct,
            "gold_logprob": self.gold_logprob,
            "nll": self.nll,
            "reasoning": list(self.reasoning),
            "answer": self.answer,
            "margin": self.margin,
        }

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        return cls(
            bool(data["correct"]),
            float(data["gold_logprob"]),
            float(data["nll"]),
            tuple(data.get("reasoning", ())),
            str(data.get("answer", "")),
            None if data.get("margin") is None else float(data["margin"]),
        )


@dataclass(frozen=True)
class SelectionConfig:
    """The constants of the rules above (see :class:`nodes.settings.StepSettings` for defaults)."""

    race_slices: tuple[int, ...] = (8, 16, 32)
    race_alpha: float = 0.2
    acceptance: Acceptance = "always"
    keep_best: int = 10
    final_candidates: int = 3
    final_alpha: float = 0.05

    @classmethod
    def from_settings(cls, settings) -> SelectionConfig:
        return cls(
            race_slices=tuple(settings.race_slices),
            race_alpha=settings.race_alpha,
            acceptance=settings.acceptance,
            keep_best=settings.keep_best,
            final_candidates=settings.final_candidates,
            final_alpha=settings.final_alpha,
        )


# ----- comparing two prompts on the same examples ------------------------------------------------
def rank_key(outcomes: Sequence[Outcome]) -> tuple[int, float, float]:
    """Higher is better: examples right, then mean gold log-probability, then lower prompt NLL."""
    n = max(len(outcomes), 1)
    return (
        sum(o.correct for o in outcomes),
        sum(o.gold_logprob for o in outcomes) / n,
        -sum(o.nll for o in outcomes) / n,
    )


def discordant(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """(examples only ``a`` got right, examples only ``b`` got right) on paired examples."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same examples: {len(a)} vs {len(b)} results")
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    return only_a, only_b


def p_better(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact one-sided McNemar p-value for "``a`` gets more examples right than ``b``"."""
    only_a, only_b = discordant(a, b)
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)


@dataclass(frozen=True)
class PairedGain:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same ``n`` examples."""

    n: int
    gain: float
    low: float  # 95% interval (Agresti-Min adjusted Wald for matched proportions)
    high: float
    p_value: float  # exact two-sided McNemar
    only_a: int
    only_b: int

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "gain": self.gain,
            "ci95": [self.low, self.high],
            "p_value": self.p_value,
            "only_new_right": self.only_a,
            "only_old_right": self.only_b,
        }


def paired_gain(a: Sequence[bool], b: Sequence[bool]) -> PairedGain:
    """The paired accuracy difference with its 95% interval and exact two-sided test.

    The interval is Agresti and Min's (2005) adjusted Wald interval for matched proportions: half
    an example is added to each of the four agree/disagree cells. It covers well at small n and
    does not collapse to a point when no example changed, as the plain Wald interval does."""
    n = len(a)
    only_a, only_b = discordant(a, b)
    if n == 0:
        return PairedGain(0, 0.0, -1.0, 1.0, 1.0, 0, 0)
    adjusted = n + 2
    pa, pb = (only_a + 0.5) / adjusted, (only_b + 0.5) / adjusted
    half = Z95 * math.sqrt(max((pa + pb) - (pa - pb) ** 2, 0.0) / adjusted)
    m = only_a + only_b
    p = float(binomtest(only_a, m, 0.5).pvalue) if m else 1.0
    centre = pa - pb
    return PairedGain(n, (only_a - only_b) / n, max(-1.0, centre - half), min(1.0, centre + half), p, only_a, only_b)


# ----- 1. racing ----------------------------------------------------------------------------------
@dataclass
class Contender:
    """A candidate in a race: its results so far (on the pool's first ``len(outcomes)`` examples)."""

    prompt: PromptIds
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str = ""  # why it left the race early; "" if it ran the whole pool

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)

    @property
    def correct(self) -> list[bool]:
        return [o.correct for o in self.outcomes]


@dataclass
class RaceResult:
    contenders: list[Contender]
    pool_size: int
    slices: list[int]

    @property
    def finished(self) -> list[Contender]:
        return [c for c in self.contenders if c.evaluated == self.pool_size and not c.stopped]


Evaluator = Callable[[list[PromptIds], int, int], list[list[Outcome]]]
"""``evaluate(prompts, start, stop)``: each prompt's outcomes on pool examples ``start:stop``."""


def slices_for(pool_size: int, race_slices: Sequence[int]) -> list[int]:
    """Cumulative slice ends: the configured ones that fit, then the whole pool."""
    return sorted({min(max(1, s), pool_size) for s in race_slices} | {pool_size}) if pool_size else []


def race(
    prompts: Sequence[PromptIds], current: Sequence[Outcome], evaluate: Evaluator, config: SelectionConfig
) -> RaceResult:
    """Race ``prompts`` against the current prompt, whose outcomes on the whole pool are ``current``."""
    pool_size = len(current)
    contenders = [Contender(tuple(p)) for p in dict.fromkeys(tuple(p) for p in prompts)]
    cuts = slices_for(pool_size, config.race_slices)
    done = 0
    for cut in cuts:
        alive = [c for c in contenders if not c.stopped]
        if not alive:
            break
        for c, new in zip(alive, evaluate([c.prompt for c in alive], done, cut), strict=True):
            c.outcomes.extend(new)
        done = cut
        if cut == pool_size:
            break  # every survivor has run the whole pool: the acceptance rule takes it from here
        base = [o.correct for o in current[:cut]]
        for c in alive:
            p = p_better(base, c.correct)
            if p <= config.race_alpha and sum(c.correct) < sum(base):  # behind: a tie never stops it
                c.stopped = _behind("the current prompt", cut, sum(c.correct), sum(base), p)
        alive = [c for c in alive if not c.stopped]
        if len(alive) > 1:
            leader = max(alive, key=lambda c: rank_key(c.outcomes))
            for c in alive:
                if c is leader:
                    continue
                p = p_better(leader.correct, c.correct)
                if p <= config.race_alpha and sum(c.correct) < sum(leader.correct):
                    c.stopped = _behind("the leading candidate", cut, sum(c.correct), sum(leader.correct), p)
    return RaceResult(contenders, pool_size, cuts)


def _behind(whom: str, n: int, right: int, their_right: int, p: float) -> str:
    return f"behind {whom} after {n} examples ({right} vs {their_right} right, p={p:.3f})"


# ----- 2. acceptance ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    prompt: PromptIds  # the prompt the run moves to (the current one when it stays)
    moved: bool
    reason: str


class AcceptanceRule(Protocol):
    """How a step decides between the current prompt and the race's best finisher: one class per
    rule, so a new rule is one class and one entry in :data:`ACCEPTANCE`."""

    name: str
    explores: bool  # when no candidate finished the race, move to the one that went furthest

    def decide(self, current: PromptIds, ours: tuple, best: Contender, summary: str) -> Decision:
        """``ours`` and the best finisher's :func:`rank_key` are compared; ``summary`` says the counts."""
        ...


class Always:
    """Move to the best finisher even when it is behind: explore, keeping the best prompts seen for
    the final choice."""

    name = "always"
    explores = True

    def decide(self, current: PromptIds, ours: tuple, best: Contender, summary: str) -> Decision:
        if rank_key(best.outcomes)[:2] < ours[:2]:
            return Decision(
                best.prompt,
                True,
                f"always: {summary}; moved though it is behind the current prompt, to explore from it "
                "(the best prompts seen are kept for the final choice; --acceptance not_worse stays instead)",
            )
        return Decision(best.prompt, True, f"always: {summary}")


class NotWorse:
    """Move when the best finisher answers at least as many right, the gold log-prob breaking ties."""

    name = "not_worse"
    explores = False

    def decide(self, current: PromptIds, ours: tuple, best: Contender, summary: str) -> Decision:
        theirs = rank_key(best.outcomes)
        moved = theirs[:2] >= ours[:2]
        tie = " (tie on accuracy, gold log-prob decides)" if theirs[0] == ours[0] else ""
        return Decision(best.prompt if moved else current, moved, f"not_worse: {summary}{tie}")


class Better:
    """Move only when the best finisher answers more examples right."""

    name = "better"
    explores = False

    def decide(self, current: PromptIds, ours: tuple, best: Contender, summary: str) -> Decision:
        moved = rank_key(best.outcomes)[0] > ours[0]
        return Decision(best.prompt if moved else current, moved, f"better: {summary}")


ACCEPTANCE: dict[str, AcceptanceRule] = {r.name: r for r in (Always(), NotWorse(), Better())}


def accept(
    current: PromptIds, current_outcomes: Sequence[Outcome], result: RaceResult, rule: Acceptance | AcceptanceRule
) -> Decision:
    """Apply the acceptance rule (a name in :data:`ACCEPTANCE`, or a rule) to a finished race."""
    chosen = ACCEPTANCE[rule] if isinstance(rule, str) else rule
    finished = result.finished
    if not finished:
        if chosen.explores and result.contenders:
            furthest = max(result.contenders, key=lambda c: (c.evaluated, rank_key(c.outcomes)))
            return Decision(
                furthest.prompt, True, "always: every candidate stopped early; took the one that went furthest"
            )
        return Decision(current, False, "no candidate finished the race")
    best = max(finished, key=lambda c: rank_key(c.outcomes))
    ours = rank_key(current_outcomes)
    summary = (
        f"best candidate {rank_key(best.outcomes)[0]}/{result.pool_size} right vs current {ours[0]}/{result.pool_size}"
    )
    return chosen.decide(current, ours, best, summary)


# ----- 3. the best-prompt list ----------------------------------------------------------------------
def update_best(best: list[dict], scored: Sequence[dict], keep: int) -> tuple[list[dict], bool]:
    """Merge prompts scored on the whole pool (dicts with ``prompt``, ``right``, ``gold_logprob``,
    ``nll``) into the list; returns the new list and whether its top accuracy rose."""
    pool = {tuple(b["prompt"]): b for b in best}
    before = max((b["right"] for b in best), default=-1)
    for s in scored:
        pool.setdefault(tuple(s["prompt"]), s)
    ranked = sorted(pool.values(), key=lambda b: (b["right"], b["gold_logprob"], -b["nll"]), reverse=True)
    ranked = ranked[:keep]
    after = ranked[0]["right"] if ranked else -1
    return ranked, after > before


# ----- 4. the final choice --------------------------------------------------------------------------
FinalRule = Literal["shared_alpha", "fixed_sequence", "pool_order", "bonferroni", "margin"]
NON_INFERIORITY = 0.05  # the margin rule: the accuracy may not be lower by more than this (95% bound)


@dataclass(frozen=True)
class FinalChoice:
    chosen: int  # index into the candidates; -1: the initial prompt was kept
    leader: int  # the best candidate on dev, chosen or not (-1: there was none)
    p_value: float  # one-sided, the chosen candidate's (or the first failing one's) test against the initial
    threshold: float  # the level each test was held to
    gain: PairedGain  # chosen (or leader, when kept) minus initial on dev
    reason: str
    rule: str = "fixed_sequence"
    tests: tuple[dict, ...] = ()  # per candidate tested, in order: p_value and passed

    @property
    def kept_initial(self) -> bool:
        return self.chosen < 0


def p_margin_better(a: Sequence[Outcome], b: Sequence[Outcome]) -> float:
    """One-sided Wilcoxon signed-rank p-value for "``a``'s per-example gold margin exceeds ``b``'s"
    (the margin is the gold answer's log-probability minus the best other answer's)."""
    from scipy.stats import wilcoxon

    diffs = [x.margin - y.margin for x, y in zip(a, b, strict=True) if x.margin is not None and y.margin is not None]
    if not any(abs(d) > 1e-12 for d in diffs):
        return 1.0
    return float(wilcoxon(diffs, alternative="greater", zero_method="wilcox").pvalue)


def final_choice(
    initial: Sequence[Outcome],
    candidates: Sequence[Sequence[Outcome]],
    alpha: float,
    advice: str = "",
    rule: FinalRule = "fixed_sequence",
    order: str = "pool order",
    start_apart: bool = False,
) -> FinalChoice:
    """Whether a candidate replaces the initial prompt, from their dev outcomes.

    ``candidates`` come in their test order, fixed before dev was looked at; ``order`` names it in
    the reason (``pool_order`` is the fixed sequence in pool rank: the caller orders the list).

    - ``fixed_sequence``: test the candidates in that order, each one-sided at ``alpha`` (exact
      McNemar), stopping at the first that fails; hand back the dev-best of those that passed. The
      family-wise error stays at ``alpha`` without splitting it, because a later hypothesis is only
      tested once every earlier one was rejected.
    - ``pool_order``: the same test, for a list the caller ordered by pool rank alone.
    - ``shared_alpha``: with ``start_apart``, the first candidate (the search's start) and the
      rest (a fixed sequence) each get ``alpha / 2``; a rejected hypothesis hands its level on, the
      start's to the sequence's next untested candidate and the sequence's, once it is through, to
      the start (a graphical procedure in the sense of Bretz et al., 2009, so the family-wise error
      stays at ``alpha``). Neither part can end the other's testing. Without ``start_apart`` it is
      the fixed sequence.
    - ``bonferroni``: test only the dev leader, at ``alpha`` divided by the number of candidates.
    - ``margin``: the fixed sequence on the per-example gold margin (one-sided Wilcoxon), passing
      only a candidate whose accuracy is not worse (the paired gain's 95% lower bound above
      ``-NON_INFERIORITY``).
    """
    n = len(initial)
    base = [o.correct for o in initial]
    if not candidates:
        gain = paired_gain(base, base)
        return FinalChoice(
            -1, -1, 1.0, alpha, gain, "no optimized prompt to compare: the initial prompt was kept", rule
        )
    leader = max(range(len(candidates)), key=lambda i: (rank_key(candidates[i]), -i))
    k = len(candidates)
    scope = f"{k} finalist{'s' if k > 1 else ''} on {n} dev examples"
    if rule == "bonferroni":
        return _bonferroni(initial, candidates, leader, alpha, scope, advice)
    if rule == "shared_alpha" and start_apart and k > 1:
        return _shared_alpha(initial, candidates, leader, alpha, scope, advice)
    tests, passed = [], []
    for i, outcomes in enumerate(candidates):
        right = [o.correct for o in outcomes]
        gain = paired_gain(right, base)
        if rule == "margin":
            p = p_margin_better(outcomes, initial)
            ok = p <= alpha and gain.low > -NON_INFERIORITY
        else:
            p = p_better(right, base)
            ok = p <= alpha
        tests.append({"candidate": i, "p_value": p, "passed": ok, "right": sum(right)})
        if not ok:
            break
        passed.append(i)
    what = "gold margin" if rule == "margin" else "dev examples right"
    if not passed:
        first = tests[0]
        lead = [o.correct for o in candidates[leader]]
        reason = (
            f"kept the initial prompt: the first finalist in {order} did not beat it on {what} "
            f"({first['right']} vs {sum(base)} of {n} right, one-sided p={first['p_value']:.3f} > {alpha:g}; {scope})"
        )
        return _kept(leader, first["p_value"], alpha, paired_gain(lead, base), reason, advice, rule, tests)
    chosen = max(passed, key=lambda i: (rank_key(candidates[i]), -i))
    right = [o.correct for o in candidates[chosen]]
    p = tests[chosen]["p_value"]
    reason = (
        f"chose finalist {chosen + 1} of {k}: {sum(right)} vs {sum(base)} of {n} dev examples right "
        f"({len(passed)} passed the fixed-sequence test on {what} at {alpha:g}, in {order}; "
        f"its one-sided p={p:.3g}; the dev-best of those that passed)"
    )
    return FinalChoice(chosen, leader, p, alpha, paired_gain(right, base), reason, rule, tuple(tests))


def _bonferroni(initial, candidates, leader: int, alpha: float, scope: str, advice: str) -> FinalChoice:
    n = len(initial)
    base = [o.correct for o in initial]
    right = [o.correct for o in candidates[leader]]
    gain = paired_gain(right, base)
    p = p_better(right, base)
    threshold = alpha / len(candidates)
    tests = ({"candidate": leader, "p_value": p, "passed": p <= threshold, "right": sum(right)},)
    if sum(right) <= sum(base):
        reason = (
            f"kept the initial prompt: no candidate answered more dev examples right ({sum(right)} vs {sum(base)} "
            f"of {n}; {scope})"
        )
    elif p > threshold:
        reason = (
            f"kept the initial prompt: the best candidate's dev lead ({sum(right)} vs {sum(base)} of {n} right) "
            f"is not significant (one-sided p={p:.3f}, needs p<={threshold:.3g} for {scope})"
        )
    else:
        reason = (
            f"chose the optimized prompt: {sum(right)} vs {sum(base)} of {n} dev examples right "
            f"(one-sided p={p:.3g} <= {threshold:.3g})"
        )
        return FinalChoice(leader, leader, p, threshold, gain, reason, "bonferroni", tests)
    return FinalChoice(-1, leader, p, threshold, gain, reason + (f"; {advice}" if advice else ""), "bonferroni", tests)


def _shared_alpha(initial, candidates, leader: int, alpha: float, scope: str, advice: str) -> FinalChoice:
    """The start (candidate 0) and the sequence of the others, alpha / 2 each, levels handed on."""
    n, k = len(initial), len(candidates)
    base = [o.correct for o in initial]
    right = [[o.correct for o in c] for c in candidates]
    p = [p_better(r, base) for r in right]
    start_level, head, chain_level = alpha / 2, 1, alpha / 2
    start_passed, moved = False, True
    while moved:
        moved = False
        if not start_passed and p[0] <= start_level:
            start_passed, moved = True, True
            chain_level, start_level = chain_level + start_level, start_level
        if head < k and p[head] <= chain_level:
            head, moved = head + 1, True
            if head == k and not start_passed:  # the sequence is through: its level goes to the start
                start_level += chain_level
    tests = [{"candidate": 0, "p_value": p[0], "passed": start_passed, "right": sum(right[0]), "level": start_level}]
    for i in range(1, min(head + 1, k)):
        tests.append(
            {"candidate": i, "p_value": p[i], "passed": i < head, "right": sum(right[i]), "level": chain_level}
        )
    passed = [t["candidate"] for t in tests if t["passed"]]
    if not passed:
        lead = [o.correct for o in candidates[leader]]
        reason = (
            f"kept the initial prompt: neither the search's start (one-sided p={p[0]:.3f}) nor the first of the "
            f"search's own prompts (p={p[1]:.3f}) beat it on dev examples right at {alpha / 2:g} each ({scope})"
        )
        return _kept(leader, min(p[0], p[1]), alpha / 2, paired_gain(lead, base), reason, advice, "shared_alpha", tests)
    chosen = max(passed, key=lambda i: (rank_key(candidates[i]), -i))
    reason = (
        f"chose finalist {chosen + 1} of {k}: {sum(right[chosen])} vs {sum(base)} of {n} dev examples right "
        f"({len(passed)} passed; the search's start and the search's own prompts in pool order were tested at "
        f"{alpha / 2:g} each, a passed test handing its level on; its one-sided p={p[chosen]:.3g}; the dev-best "
        f"of those that passed)"
    )
    level = next(t["level"] for t in tests if t["candidate"] == chosen)
    return FinalChoice(
        chosen, leader, p[chosen], level, paired_gain(right[chosen], base), reason, "shared_alpha", tuple(tests)
    )


def _kept(
    leader: int, p: float, level: float, gain: PairedGain, reason: str, advice: str, rule: str, tests
) -> FinalChoice:
    """The verdict that keeps the initial prompt, with the advice for getting a clearer answer."""
    return FinalChoice(-1, leader, p, level, gain, reason + (f"; {advice}" if advice else ""), rule, tuple(tests))
