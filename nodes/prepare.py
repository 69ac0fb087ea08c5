"""prepare: turn the run's settings into its starting state (the initial prompt as token ids).

With warm start on, the best stored prompts of the most similar earlier tasks (same model) are
scored on this task's dev split against the initial prompt. By default they race it: a stored
prompt a paired test puts behind the initial one after a slice of dev stops early (most cost
little), and the dev leader among those that finish replaces the initial prompt only with a
significant lead, the same test the run's final choice applies. A prompt that happened to do well
on another task is otherwise a coin flip on this one, and the best of several coin flips on a small
dev split looks better than it is.
"""

from __future__ import annotations

import time

from nodes.selection import SelectionConfig, final_choice, race, rank_key
from nodes.session import Session, rollouts, scored, session, trajectory_of
from store.checkpoints import new_run_id


def _warm_start(sess: Session, initial: tuple[int, ...], cache_store=None) -> tuple[tuple[int, ...], dict]:
    store = trajectory_of(sess)
    questions = [e.question for e in sess.task.examples[:32]]
    if store is None:
        return initial, {}
    similar = store.similar_tasks(questions, exclude=sess.task.name, k=3)
    pool = [initial]
    sources = [{"task": sess.task.name, "text": sess.rt.decode(initial), "initial": True}]
    for task, similarity in similar:
        for r in store.best(task=task, model=sess.settings.model, k=2):
            ids = tuple(r.prompt_ids)
            if ids and ids not in pool:
                pool.append(ids)
                sources.append({"task": task, "text": r.text, "similarity": round(similarity, 4)})
    if len(pool) == 1:
        return initial, {"considered": sources, "chosen": 0}
    st = sess.settings
    if st.warm_start_rule == "race":
        return _raced(sess, pool, sources, cache_store)
    dev = rollouts(sess, cache_store, sess.splits.dev, pool, label="warm start on dev")
    for src, r in zip(sources, dev, strict=True):
        src["dev_accuracy"] = r.accuracy
        src["dev_gold_logprob"] = r.gold_logprob
        src["dev_score"] = r.score(st.score_nll_weight)
    # the initial prompt wins ties: a stored prompt must answer more dev examples right, or as many
    # with a higher gold-answer log-probability
    best = max(range(len(pool)), key=lambda i: (rank_key(dev[i].outcomes)[:2], -i))
    return pool[best], {"considered": sources, "chosen": best, "rule": "best"}


def _raced(sess: Session, pool: list, sources: list[dict], cache_store) -> tuple[tuple[int, ...], dict]:
    """Stored prompts (``pool[1:]``) race the initial one (``pool[0]``) on dev."""
    st = sess.settings
    dev = sess.splits.dev
    (initial,) = rollouts(sess, cache_store, dev, [pool[0]], label="warm start on dev")

    def evaluate_slice(alive: list[tuple[int, ...]], start: int, stop: int):
        drafts = initial.reasonings[start:stop]
        return [r.outcomes for r in rollouts(sess, cache_store, dev[start:stop], alive, drafts=drafts)]

    result = race(pool[1:], initial.outcomes, evaluate_slice, SelectionConfig.from_settings(st))
    sources[0].update(dev_accuracy=initial.accuracy, dev_examples=len(dev))
    for src, c in zip(sources[1:], result.contenders, strict=True):
        src.update(dev_accuracy=sum(c.correct) / max(1, c.evaluated), dev_examples=c.evaluated)
        if c.stopped:
            src["stopped"] = c.stopped
    done = {id(c) for c in result.finished}
    finished = [i for i, c in enumerate(result.contenders, start=1) if id(c) in done]
    choice = final_choice(initial.outcomes, [result.contenders[i - 1].outcomes for i in finished], st.final_alpha)
    chosen = 0 if choice.kept_initial else finished[choice.chosen]
    reason = choice.reason.replace("optimized prompt", "stored prompt").replace("candidate", "stored prompt")
    return pool[chosen], {"considered": sources, "chosen": chosen, "rule": "race", "reason": reason}


def prepare(state: dict, store=None) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    initial = tuple(sess.rt.encode_prompt(st.initial_prompt))
    began = time.perf_counter()
    start, warm = _warm_start(sess, initial, store) if st.warm_start else (initial, {})
    if warm:  # what the warm start cost in model time, kept with its choice
        warm["seconds"] = round(time.perf_counter() - began, 3)
    store = trajectory_of(sess)
    if store is not None:
        store.register_task(
            sess.task.name, [e.question for e in sess.task.examples[:32]], sess.task.answer_format.kind.value
        )
    baseline = scored(sess, start, "initial", step=0)
    return {
        "run_id": state.get("run_id") or new_run_id(sess.task.name),
        "step": 0,
        "prompt": list(start),
        "prompt_text": baseline["text"],
        "position": 0,
        "baseline": baseline,
        "warm_start": warm,
        "history": [],
        "best": [],
        "stale": 0,
        "done": st.steps == 0,
        "stop_reason": "no steps asked for" if st.steps == 0 else "",
        "timings": {},
    }
