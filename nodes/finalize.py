"""finalize: the honest end of a run. The search's start (when a baseline won the race before
step 0), the best prompts on the pool and the initial one are scored on the dev split; the initial
prompt is kept unless a finalist passes the run's final rule (:func:`nodes.decisions.final_choice`,
finalists in the order :func:`finalists` fixes). Then
the initial prompt, the chosen one, the empty prompt and "Let's think step by step." are scored on
the test split, and the gains over the initial prompt on dev and test are reported as paired
differences with intervals and p-values, next to the majority-answer rate. What the other final
rules would have chosen is kept too, with its test gain, so rules can be compared across runs.

Choosing on dev and reporting on test keeps the reported number honest: the pool scores that
steered the search were measured on training examples, and the dev scores picked the winner.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import FinalChoice, final_choice, paired_gain
from gradprompt.nodes.readability import readability
from gradprompt.nodes.session import Session, rollouts, trajectory_of, trajectory_record
from gradprompt.nodes.settings import DEFAULT_PROMPT
from gradprompt.nodes.state import State
from gradprompt.nodes.tasks.confidence import wilson_interval

RULES = ("shared_alpha", "fixed_sequence", "pool_order", "bonferroni", "margin")
START_FIRST = "start-first order (the search's start, then pool rank)"


def finalists(
    initial: tuple[int, ...], start: tuple[int, ...], ranked: list[tuple[int, ...]], k: int
) -> tuple[list[tuple[int, ...]], list[int]]:
    """The prompts dev judges, in their test order, and that list's indices in pool rank.

    The test order puts the search's start first when it is a baseline rather than the initial
    prompt, then the ``k`` best of the search's prompts on the pool. The start won a race of a few
    fixed prompts, so its pool lead is little inflated by selection; the search's prompts won many
    races on the same pool and their pool scores overstate them most. Keeping the start at the
    head lets a rule treat it apart (``shared_alpha``) or test it first (``fixed_sequence``), so an
    overfitted search prompt cannot end the testing before it. Both orders are fixed before dev is
    looked at.
    """
    searched = [p for p in dict.fromkeys(ranked) if p not in (initial, start)][:k]
    ordered = ([start] if start != initial else []) + searched
    place = {p: i for i, p in enumerate(ranked)}
    pool_rank = sorted(range(len(ordered)), key=lambda i: (place.get(ordered[i], len(ranked)), i))
    return ordered, pool_rank


def start_of(state: dict) -> tuple[int, ...]:
    """The prompt the search started from: the initial one unless a baseline won the race before
    step 0. The empty prompt is a start like any other, not a missing one."""
    begun = (state.get("start") or {}).get("prompt")
    return tuple(state["baseline"]["prompt"] if begun is None else begun)


def choose(dev: list, order, rule: str, alpha: float, advice: str = "", start_apart: bool = False) -> FinalChoice:
    """One final rule on the dev rollouts (initial first), its finalists tested in ``order``
    (``start_apart``: the first finalist is the search's start); the indices it returns point into
    the finalists' own list."""
    order = list(order)
    choice = final_choice(
        dev[0].outcomes,
        [dev[1 + i].outcomes for i in order],
        alpha,
        advice,
        rule,
        "pool order" if rule == "pool_order" else START_FIRST,
        start_apart,
    )
    back = {-1: -1, **dict(enumerate(order))}
    return replace(
        choice,
        chosen=back[choice.chosen],
        leader=back[choice.leader],
        tests=tuple({**t, "candidate": order[t["candidate"]]} for t in choice.tests),
    )


def _accuracy(correct: list[bool]) -> dict:
    n = len(correct)
    if n == 0:
        return {"accuracy": None, "right": 0, "n": 0, "ci95": None}
    low, high = wilson_interval(sum(correct), n)
    return {"accuracy": sum(correct) / n, "right": sum(correct), "n": n, "ci95": [low, high]}


def majority_rate(sess: Session, examples) -> dict:
    """The most common gold answer of ``examples`` and its share: what always giving one answer
    gets, the best a prompt that collapses the model onto one label can reach."""
    if not examples:
        return {"answer": None, "accuracy": None}
    fmt = sess.task.answer_format
    answer, count = Counter(fmt.normalize_gold(e.answer) for e in examples).most_common(1)[0]
    return {"answer": answer, "accuracy": count / len(examples)}


def advice(sess: Session) -> str:
    s = sess.settings
    return f"try more steps or a larger dev split (e.g. --steps {max(2 * s.steps, 10)} --dev {max(2 * s.dev, 100)})"


def final_choices(sess: Session, state: dict) -> tuple[list, list, dict[str, FinalChoice]]:
    """The dev verdict of every final rule on a finished search: the prompts dev judged (the
    initial one first, then the finalists in test order), their dev rollouts, and each rule's
    choice. Cached rollouts make it cheap to ask again of a run that has ended."""
    baseline = tuple(state["baseline"]["prompt"])
    ranked = [tuple(b["prompt"]) for b in state.get("best", [])]
    start = start_of(state)
    candidates, pool_rank = finalists(baseline, start, ranked, sess.settings.final_candidates)
    judged = [baseline, *candidates]
    dev = rollouts(sess, sess.splits.dev, judged, label="dev evaluation")
    tested_in = {rule: pool_rank if rule == "pool_order" else range(len(candidates)) for rule in RULES}
    apart = start != baseline
    alpha = sess.settings.final_alpha
    return judged, dev, {rule: choose(dev, tested_in[rule], rule, alpha, advice(sess), apart) for rule in RULES}


def rule_picks(judged: list, choices: dict[str, FinalChoice]) -> dict[str, tuple[int, ...]]:
    """The prompt each rule hands back (the initial one, ``judged[0]``, when it keeps it)."""
    return {rule: judged[0] if c.kept_initial else judged[c.chosen + 1] for rule, c in choices.items()}


def rules_summary(sess: Session, choices: dict[str, FinalChoice], picks: dict, dev: dict, test: dict) -> dict:
    """What each rule would have handed back, why, and that prompt's paired dev and test gains
    (``dev`` and ``test`` map prompts to rollouts; the initial prompt's comes first in each)."""
    baseline = next(iter(dev))
    return {
        rule: {
            "kept_initial": c.kept_initial,
            "text": sess.rt.decode(picks[rule]),
            "reason": c.reason,
            "dev_gain": paired_gain(dev[picks[rule]].correct, dev[baseline].correct).to_json(),
            "test_gain": paired_gain(test[picks[rule]].correct, test[baseline].correct).to_json() if test else None,
        }
        for rule, c in choices.items()
    }


def finalize(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    judged, dev, choices = final_choices(sess, state)
    baseline, candidates = judged[0], judged[1:]
    choice = choices[st.final_rule]
    pick = rule_picks(judged, choices)
    chosen = pick[st.final_rule]
    empty: tuple[int, ...] = ()
    step_by_step = tuple(sess.rt.encode_prompt(DEFAULT_PROMPT))
    reported = list(dict.fromkeys([baseline, chosen, empty, step_by_step, *pick.values()]))
    test = (
        dict(
            zip(
                reported,
                rollouts(sess, sess.splits.test, reported, label="test evaluation"),
                strict=True,
            )
        )
        if sess.splits.test
        else {}
    )
    dev_of = {p: r for p, r in zip([baseline, *candidates], dev, strict=True)}

    def summary(p: tuple[int, ...]) -> dict:
        test_correct = test[p].correct if test else []
        text = sess.rt.decode(p)
        return {
            "prompt": list(p),
            "text": text,
            "known_words": readability(text)["known_words"],
            "dev": _accuracy(dev_of[p].correct) if p in dev_of else None,
            "test": _accuracy(test_correct),
            "dev_accuracy": dev_of[p].accuracy if p in dev_of else None,
            "test_accuracy": test[p].accuracy if test else None,
        }

    gain_test = paired_gain(test[chosen].correct, test[baseline].correct).to_json() if test else None
    on_dev = [
        {
            "prompt": list(p),
            "text": sess.rt.decode(p),
            "dev_accuracy": r.accuracy,
            "dev_gold_logprob": r.gold_logprob,
            "dev_score": r.score(st.score_nll_weight),
        }
        for p, r in zip([baseline, *candidates], dev, strict=True)
    ]
    _record_dev(sess, state, on_dev, 0 if choice.kept_initial else choice.chosen + 1)
    return {
        "final": {
            "variant": st.variant,
            "baseline": summary(baseline),
            "best": summary(chosen),
            "kept_initial": choice.kept_initial,
            "reason": choice.reason,
            "dev_p_value": choice.p_value,
            "dev_threshold": choice.threshold,
            "gain": {
                "dev": paired_gain(dev_of[chosen].correct, dev[0].correct).to_json(),
                "test": gain_test,
                "dev_leader": (
                    paired_gain(dev[choice.leader + 1].correct, dev[0].correct) if choice.leader >= 0 else choice.gain
                ).to_json(),
            },
            "empty_prompt": {"test": _accuracy(test[empty].correct) if test else None},
            "step_by_step": {"test": _accuracy(test[step_by_step].correct) if test else None},
            "start": state.get("start"),
            "rule": st.final_rule,
            "tests": list(choice.tests),
            "rules": rules_summary(sess, choices, pick, dev_of, test),
            "majority_answer": majority_rate(sess, sess.splits.test),
            "dev_candidates": on_dev,
            # where in dev_candidates the best optimized prompt on dev is, chosen or not
            "dev_leader": None if choice.leader < 0 else choice.leader + 1,
            "dev_examples": len(sess.splits.dev),
            "test_examples": len(sess.splits.test),
        },
        "done": True,
    }


def _record_dev(sess: Session, state: dict, on_dev: list[dict], chosen: int) -> None:
    """Dev accuracy is the trajectory's most trustworthy score: keep it with the prompts, tagged with
    the splits it was measured on so runs with other splits do not take it as theirs."""
    trajectory = trajectory_of(sess)
    if trajectory is None:
        return
    trajectory.add(
        [
            trajectory_record(
                sess,
                state,
                text=d["text"],
                prompt_ids=d["prompt"],
                source="dev",
                accepted=i == chosen,
                score=d["dev_score"],
                dev_accuracy=d["dev_accuracy"],
                examples=len(sess.splits.dev),
            )
            for i, d in enumerate(on_dev)
        ]
    )
