"""finalize: the honest end of a run. The best prompts of the search and the initial one are
scored on the dev split; the initial prompt is kept unless the dev leader beats it significantly
(:func:`nodes.selection.final_choice`). Then the initial prompt, the chosen one and the empty
prompt are scored on the test split, and the gains over the initial prompt on dev and test are
reported as paired differences with intervals and p-values, next to the majority-answer rate.

Choosing on dev and reporting on test keeps the reported number honest: the pool scores that
steered the search were measured on training examples, and the dev scores picked the winner.
"""

from __future__ import annotations

from collections import Counter

from nodes.selection import final_choice, paired_gain
from nodes.session import Session, rollouts, session, trajectory_of, trajectory_record
from nodes.tasks.confidence import wilson_interval


def _accuracy(correct: list[bool]) -> dict:
    n = len(correct)
    if n == 0:
        return {"accuracy": None, "right": 0, "n": 0, "ci95": None}
    low, high = wilson_interval(sum(correct), n)
    return {"accuracy": sum(correct) / n, "right": sum(correct), "n": n, "ci95": [low, high]}


def majority_rate(sess: Session) -> dict:
    """Test accuracy of always giving the test split's most common gold answer: what a prompt that
    collapses the model onto one answer can reach at best."""
    fmt, test = sess.task.answer_format, sess.splits.test
    if not test:
        return {"answer": None, "accuracy": None}
    answer, count = Counter(fmt.normalize_gold(e.answer) for e in test).most_common(1)[0]
    return {"answer": answer, "accuracy": count / len(test)}


def advice(sess: Session) -> str:
    s = sess.settings
    return f"try more steps or a larger dev split (e.g. --steps {max(2 * s.steps, 10)} --dev {max(2 * s.dev, 100)})"


def finalize(state: dict, store=None) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    baseline = tuple(state["baseline"]["prompt"])
    ranked = [tuple(b["prompt"]) for b in state.get("best", [])]
    candidates = [p for p in dict.fromkeys(ranked) if p != baseline][: st.final_candidates]
    dev = rollouts(sess, store, sess.splits.dev, [baseline, *candidates], label="dev evaluation")
    choice = final_choice(dev[0].outcomes, [r.outcomes for r in dev[1:]], st.final_alpha, advice(sess))
    chosen = baseline if choice.kept_initial else candidates[choice.chosen]
    empty: tuple[int, ...] = ()
    reported = list(dict.fromkeys([baseline, chosen, empty]))
    test = (
        dict(
            zip(
                reported,
                rollouts(sess, store, sess.splits.test, reported, label="test evaluation"),
                strict=True,
            )
        )
        if sess.splits.test
        else {}
    )
    dev_of = {p: r for p, r in zip([baseline, *candidates], dev, strict=True)}

    def summary(p: tuple[int, ...]) -> dict:
        test_correct = test[p].correct if test else []
        return {
            "prompt": list(p),
            "text": sess.rt.decode(p),
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
                "dev_leader": choice.gain.to_json(),
            },
            "empty_prompt": {"test": _accuracy(test[empty].correct) if test else None},
            "majority_answer": majority_rate(sess),
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
    store = trajectory_of(sess)
    if store is None:
        return
    store.add(
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
