"""finalize: choose the final prompt on the dev split among the best prompts seen (and the initial
one), then report dev and test accuracy of the initial and the chosen prompt.

Choosing on dev and reporting on test keeps the reported number honest: the minibatch scores that
steered the search were measured on training examples.
"""

from __future__ import annotations

from nodes.greater import rollout
from nodes.session import Session, session, trajectory_of


def finalize(state: dict) -> dict:
    sess = session(state["settings"])
    st, fmt = sess.settings, sess.task.answer_format
    baseline = tuple(state["baseline"]["prompt"])
    pool = list(dict.fromkeys([baseline, *(tuple(b["prompt"]) for b in state.get("best", []))]))
    dev = rollout(sess.rt, fmt, sess.splits.dev, pool, st.max_new_tokens, label="dev evaluation")
    on_dev = [
        {
            "prompt": list(p),
            "text": sess.rt.decode(p),
            "dev_accuracy": r.accuracy,
            "dev_score": r.score(st.score_nll_weight),
        }
        for p, r in zip(pool, dev, strict=True)
    ]
    chosen = min(range(len(pool)), key=lambda i: (on_dev[i]["dev_score"], i))
    reported = list(dict.fromkeys([baseline, pool[chosen]]))
    test = (
        rollout(sess.rt, fmt, sess.splits.test, reported, st.max_new_tokens, label="test evaluation")
        if sess.splits.test
        else []
    )
    test_acc = {p: r.accuracy for p, r in zip(reported, test, strict=True)} if test else {}

    def result(i: int) -> dict:
        p = pool[i]
        return {**on_dev[i], "test_accuracy": test_acc.get(p)}

    _record_dev(sess, state, on_dev, chosen)
    return {
        "final": {
            "variant": st.variant,
            "baseline": result(0),
            "best": result(chosen),
            "dev_candidates": on_dev,
            "dev_examples": len(sess.splits.dev),
            "test_examples": len(sess.splits.test),
        },
        "done": True,
    }


def _record_dev(sess: Session, state: dict, on_dev: list[dict], chosen: int) -> None:
    """Dev accuracy is the trajectory's most trustworthy score: keep it with the prompts."""
    store = trajectory_of(sess)
    if store is None:
        return
    from store.trajectory import TrajectoryRecord

    store.add(
        [
            TrajectoryRecord(
                text=d["text"],
                prompt_ids=d["prompt"],
                task=sess.task.name,
                model=sess.settings.model,
                run_id=state["run_id"],
                step=state["step"],
                source="dev",
                accepted=i == chosen,
                score=d["dev_score"],
                dev_accuracy=d["dev_accuracy"],
            )
            for i, d in enumerate(on_dev)
        ]
    )
