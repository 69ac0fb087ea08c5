"""Where a step's candidate prompts come from: every source behind one small interface.

A :class:`Proposer` looks at the step (:class:`StepView`: the run's session, its rollout cache
among its shared objects, and the state) and returns :class:`Candidate` prompts. Racing,
acceptance, the history and the per-source counts treat every candidate alike, whoever offered it,
so a new source is one class here and one entry in the variant's proposers (:mod:`nodes.step`):

- ``gradient``: GReaTer's proposals ranked by the one-hot gradient, as whole-word moves
  (:mod:`nodes.word_moves`) or, as in the paper, single tokens (:mod:`nodes.greater`);
- ``phrase``: model-free phrase edits after GrIPS (:mod:`nodes.phrase_edits`);
- ``retrieval``: the best-scoring similar past prompt within the edit limit (GPO);
- ``refinement``: whole prompts written by a chat model (GPO's generation-based update,
  :class:`nodes.refine.Refinement`);
- ``human``: a person's edit at approval (:mod:`nodes.approve`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from gradprompt.nodes.edit_limit import positions_for_step, word_distance
from gradprompt.nodes.prompt_ids import PromptIds

SOURCES = ("gradient", "phrase", "retrieval", "refinement", "human")


@dataclass(frozen=True)
class Candidate:
    """A whole prompt offered to the race, and what made it."""

    prompt: PromptIds
    source: str
    move: str = ""  # the edit in words ("replace 'Classify' with 'Determine'")
    gradient: float | None = None  # the one-hot gradient that ranked it (gradient source)
    token: int | None = None  # the token placed (token moves)
    removed: tuple[int, ...] = ()  # a phrase deletion's tokens, for adding back later
    fluency_cost: float | None = None  # NLL the move added to the prompt read on its own (word moves)

    def to_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": list(self.prompt), "source": self.source}
        if self.move:
            out["move"] = self.move
        if self.gradient is not None:
            out["gradient"] = self.gradient
        if self.token is not None:
            out["token"] = self.token
        if self.removed:
            out["removed"] = list(self.removed)
        if self.fluency_cost is not None:
            out["fluency_cost"] = self.fluency_cost
        return out


@dataclass
class StepView:
    """What a proposer may read: the run's shared objects (its rollout cache among them) and the state."""

    sess: Any  # nodes.session.Session
    state: dict
    notes: dict[str, Any] = field(default_factory=dict)  # what a proposer reports back (kept in state)

    @property
    def prompt(self) -> PromptIds:
        return tuple(self.state["prompt"])

    @property
    def step(self) -> int:
        return int(self.state["step"])


class Proposer(Protocol):
    source: str

    def propose(self, view: StepView) -> list[Candidate]: ...


class _Gradient:
    """What both gradient moves start from: the step's gradient batch, the current prompt's
    reasoning on it (cached: reason rolled out the pool) and the step's group draw."""

    source = "gradient"

    def __init__(self, n: int):
        self.n = n

    @staticmethod
    def inputs(view: StepView):
        from gradprompt.nodes.session import gradient_examples, rollouts

        sess = view.sess
        examples = gradient_examples(sess, view.step)
        current = rollouts(sess, examples, [view.prompt])[0]
        rng = random.Random(f"{sess.settings.seed}:{view.step}:groups")
        return sess, examples, current.reasonings, rng


class GradientWords(_Gradient):
    """Whole-word replace / insert / delete at the step's slot, ranked by the one-hot gradient."""

    def propose(self, view: StepView) -> list[Candidate]:
        from gradprompt.nodes.greater import forced_rows
        from gradprompt.nodes.word_moves import propose_word_moves

        sess, examples, reasonings, rng = self.inputs(view)
        result = propose_word_moves(
            sess.rt,
            lambda prompt: forced_rows(sess.rt, sess.readout, examples, prompt, reasonings),
            sess.settings,
            examples,
            view.prompt,
            view.state["position"],
            reasonings,
            rng,
            self.n,
            extra_tokens=view.state.get("extra_tokens", ()),
        )
        view.notes["word_proposal"] = {"slot": result.slot, "candidates": result.candidates}
        view.notes["disfluent"] = view.notes.get("disfluent", 0) + result.disfluent
        return [
            Candidate(m.prompt, self.source, m.describe(), m.gradient, fluency_cost=m.fluency_cost)
            for m in result.moves
        ]


class GradientTokens(_Gradient):
    """GReaTer's own move: the token at the step's position (or a window of positions) replaced."""

    def propose(self, view: StepView) -> list[Candidate]:
        from gradprompt.nodes.greater import propose as greater_propose
        from gradprompt.nodes.session import step_edit_limit

        sess, examples, reasonings, rng = self.inputs(view)
        st = sess.settings
        limit = view.state.get("edit_limit", step_edit_limit(sess, view.step))
        proposal = greater_propose(
            sess.rt,
            sess.readout,
            st,
            examples,
            view.prompt,
            view.state["position"],
            reasonings,
            rng,
            extra_tokens=view.state.get("extra_tokens", ()),
            n_positions=positions_for_step(limit, st.edit_max, st.edit_min, st.edit_positions),
        )
        view.notes["proposal"] = {
            "position": proposal.position,
            "current_token": proposal.current_token,
            "base_prompt": list(proposal.base_prompt),
            "candidates": proposal.candidates,
            "gradients": proposal.gradients,
            "ranked": proposal.ranked,
            "more": [list(m) for m in proposal.more],
        }
        grad = dict(zip(proposal.candidates, proposal.gradients, strict=True))
        decode = sess.rt.decode
        return [
            Candidate(p, self.source, f"token {decode([token])!r} at {proposal.position}", grad[token], token)
            for p, token in zip(proposal.top_prompts(self.n), proposal.ranked, strict=False)
        ]


class PhraseEdits:
    """GrIPS-style delete / swap / add-back of phrases, drawn at random with the run's seed."""

    source = "phrase"

    def __init__(self, n: int):
        self.n = n

    def propose(self, view: StepView) -> list[Candidate]:
        from gradprompt.nodes.phrase_edits import sample_edits
        from gradprompt.nodes.runtime.scoring import fluency_costs

        sess, st = view.sess, view.sess.settings
        if self.n <= 0:
            return []
        rng = random.Random(f"{st.seed}:{view.step}:phrases")
        deleted = [tuple(d) for d in view.state.get("deleted_phrases", [])]
        # drawn three times over, so edits the fluency limit drops leave others to race
        draws = 1 if st.fluency_max_cost is None else 3
        edits = sample_edits(sess.rt.tokenizer, sess.rt.layout.text_ids, view.prompt, deleted, draws * self.n, rng)
        if st.fluency_max_cost is None:
            return [Candidate(e.prompt, self.source, e.describe(), removed=e.removed) for e in edits[: self.n]]
        costs = fluency_costs(sess.rt, view.prompt, [e.prompt for e in edits])
        fluent = [(e, c) for e, c in zip(edits, costs, strict=True) if c <= st.fluency_max_cost]
        view.notes["disfluent"] = view.notes.get("disfluent", 0) + min(len(edits), self.n) - min(len(fluent), self.n)
        return [
            Candidate(e.prompt, self.source, e.describe(), removed=e.removed, fluency_cost=c)
            for e, c in fluent[: self.n]
        ]


class Retrieval:
    """GPO's update direction as a whole prompt: the best-scoring retrieved prompt within the
    step's word edit limit (its words at the edited slot also join the gradient's candidates)."""

    source = "retrieval"

    def propose(self, view: StepView) -> list[Candidate]:
        from gradprompt.nodes.runtime.scoring import fluency_costs

        text, limit = view.state["prompt_text"], view.state.get("edit_limit")
        scored = sorted(
            (r for r in view.state.get("retrieved", []) if r.get("score") is not None and r.get("prompt")),
            key=lambda r: r["score"],
        )
        within = [r for r in scored if limit is None or word_distance(r["text"], text) <= limit]
        max_cost = view.sess.settings.fluency_max_cost
        if max_cost is None or not within:
            return [Candidate(tuple(within[0]["prompt"]), self.source, "retrieved")] if within else []
        # a stored prompt from another run may read worse than this run allows its own moves to
        costs = fluency_costs(view.sess.rt, view.prompt, [r["prompt"] for r in within])
        for r, cost in zip(within, costs, strict=True):
            if cost <= max_cost:
                return [Candidate(tuple(r["prompt"]), self.source, "retrieved", fluency_cost=cost)]
        view.notes["disfluent"] = view.notes.get("disfluent", 0) + 1
        return []


def gradient_proposer(settings, n: int) -> Proposer:
    return GradientWords(n) if settings.moves == "words" else GradientTokens(n)


def source_counts(offered: list[dict], raced: list[dict], evaluated: list[dict], decision: dict, moved: bool) -> dict:
    """Per source: candidates offered, raced (not dropped as held before or over the limit), that
    finished the whole pool, and accepted (the step moved to it)."""
    counts: dict[str, dict[str, int]] = {}

    def bump(source: str, key: str) -> None:
        row = counts.setdefault(source, {"offered": 0, "raced": 0, "finished": 0, "accepted": 0})
        row[key] += 1

    for c in offered:
        bump(c["source"], "offered")
    for c in raced:
        bump(c["source"], "raced")
    for c in evaluated:
        if c.get("finished"):
            bump(c["source"], "finished")
    if moved:
        bump(decision.get("source", "gradient"), "accepted")
    return counts


def source_totals(history: list[dict]) -> dict[str, dict[str, int]]:
    """Per source, summed over a run's steps: offered, raced, finished the pool, accepted; what
    each proposer cost and what it earned."""
    total: dict[str, dict[str, int]] = {}
    for h in history:
        for source, counts in (h.get("sources") or {}).items():
            row = total.setdefault(source, {"offered": 0, "raced": 0, "finished": 0, "accepted": 0})
            for key, n in counts.items():
                row[key] = row.get(key, 0) + n
    return total
