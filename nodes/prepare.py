"""prepare: turn the run's settings into its starting state.

Before step 0 the simple baselines race on the selection pool: the initial prompt, the empty
prompt, "Let's think step by step.", the plain instruction that names the task's answer format
("Answer with Yes or No.", from `AnswerFormat.instruction`) and (with warm start) the stored prompt
the warm start chose.
The search starts from the best of them on the pool (the initial prompt wins ties), and those that
ran the whole pool join the best-prompt list, so the final choice weighs them with the search's own
prompts. The final choice is always made against the user's initial prompt: an optimizer that
cannot beat the empty prompt or "Let's think step by step." is no use, and the result says where
the search started and why.

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

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import final_choice, rank_key, update_best
from gradprompt.nodes.session import Session, rollouts, scored, selection_pool, trajectory_of
from gradprompt.nodes.settings import DEFAULT_PROMPT
from gradprompt.nodes.state import State
from gradprompt.nodes.step import race_candidates
from gradprompt.store.checkpoints import new_run_id

EMPTY: tuple[int, ...] = ()


def _warm_start(sess: Session, initial: tuple[int, ...]) -> tuple[tuple[int, ...], dict]:
    trajectory = trajectory_of(sess)
    questions = [e.question for e in sess.task.examples[:32]]
    if trajectory is None:
        return initial, {}
    similar = trajectory.similar_tasks(questions, exclude=sess.task.name, k=3)
    pool = [initial]
    sources = [{"task": sess.task.name, "text": sess.rt.decode(initial), "initial": True}]
    for task, similarity in similar:
        for r in trajectory.best(task=task, model=sess.settings.model, k=2):
            ids = tuple(r.prompt_ids)
            if ids and ids not in pool:
                pool.append(ids)
                sources.append({"task": task, "text": r.text, "similarity": round(similarity, 4)})
    if len(pool) == 1:
        return initial, {"considered": sources, "chosen": 0}
    st = sess.settings
    if st.warm_start_rule == "race":
        return _raced(sess, pool, sources)
    dev = rollouts(sess, sess.splits.dev, pool, label="warm start on dev")
    for src, r in zip(sources, dev, strict=True):
        src["dev_accuracy"] = r.accuracy
        src["dev_gold_logprob"] = r.gold_logprob
        src["dev_score"] = r.score(st.score_nll_weight)
    # the initial prompt wins ties: a stored prompt must answer more dev examples right, or as many
    # with a higher gold-answer log-probability
    best = max(range(len(pool)), key=lambda i: (rank_key(dev[i].outcomes)[:2], -i))
    return pool[best], {"considered": sources, "chosen": best, "rule": "best"}


def _raced(sess: Session, pool: list, sources: list[dict]) -> tuple[tuple[int, ...], dict]:
    """Stored prompts (``pool[1:]``) race the initial one (``pool[0]``) on dev."""
    st = sess.settings
    dev = sess.splits.dev
    (initial,) = rollouts(sess, dev, [pool[0]], label="warm start on dev")

    result = race_candidates(sess, pool[1:], initial, dev)
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


def race_baselines(sess: Session, initial: tuple[int, ...], others: dict) -> tuple[list[dict], int]:
    """The initial prompt and ``others`` (prompt -> name) raced on the pool; every baseline as the
    state records it, and the index of the best one that ran the whole pool (0, the initial
    prompt, on ties)."""
    pool = selection_pool(sess)
    names = {initial: "initial", **{p: n for p, n in others.items() if p != initial}}
    prompts = list(names)
    (first,) = rollouts(sess, pool, [initial], label="baselines on the pool")

    result = race_candidates(sess, prompts[1:], first, pool)
    entries, finished = [], [0]
    for i, prompt in enumerate(prompts):
        if i == 0:
            got, stopped = first, ""
        else:
            contender = result.contenders[i - 1]
            got = rollouts(sess, pool[: contender.evaluated], [prompt])[0]
            stopped = contender.stopped or ("" if contender.evaluated == len(pool) else "not reached")
            if not stopped:
                finished.append(i)
        entries.append(
            scored(
                sess,
                prompt,
                "initial" if i == 0 else "baseline",
                got,
                step=0,
                baseline=names[prompt],
                finished=not stopped,
                stopped=stopped,
            )
        )
    outcomes = {i: rollouts(sess, pool, [prompts[i]])[0].outcomes for i in finished}
    best = max(finished, key=lambda i: (rank_key(outcomes[i])[:2], -i))
    return entries, best


def _start_reason(entries: list[dict], best: int, pool_size: int) -> str:
    chosen, initial = entries[best], entries[0]
    others = ", ".join(f"{e['baseline']} {e['right']}/{e['examples']}" for e in entries[1:])
    if best == 0:
        return f"started from the initial prompt ({initial['right']}/{pool_size} pool examples right; {others})"
    return (
        f"started from the {chosen['baseline']} prompt: {chosen['right']}/{pool_size} pool examples right vs "
        f"{initial['right']}/{pool_size} for the initial prompt ({others}); the final choice still compares "
        "with the initial prompt"
    )


def prepare(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    initial = tuple(sess.rt.encode_prompt(st.initial_prompt))
    began = time.perf_counter()
    warm_prompt, warm = _warm_start(sess, initial) if st.warm_start else (initial, {})
    if warm:  # what the warm start cost in model time, kept with its choice
        warm["seconds"] = round(time.perf_counter() - began, 3)
    trajectory = trajectory_of(sess)
    if trajectory is not None:
        trajectory.register_task(
            sess.task.name, [e.question for e in sess.task.examples[:32]], sess.task.answer_format.kind.value
        )
    baseline = scored(sess, initial, "initial", step=0)
    begin = {"prompt": list(warm_prompt), "text": sess.rt.decode(warm_prompt), "name": "initial"}
    if warm_prompt != initial:
        begin.update(name="warm start", reason="the warm start's stored prompt won on dev")
    baselines, best = [], []
    if st.baselines and st.steps > 0:
        others = {EMPTY: "empty", tuple(sess.rt.encode_prompt(DEFAULT_PROMPT)): "step by step"}
        named = sess.task.answer_format.instruction()
        if named:
            others[tuple(sess.rt.encode_prompt(named))] = "answer format"
        if warm_prompt != initial:
            others = {warm_prompt: "warm start", **others}
        baselines, pick = race_baselines(sess, initial, others)
        chosen = baselines[pick]
        begin = {
            "prompt": chosen["prompt"],
            "text": chosen["text"],
            "name": chosen["baseline"],
            "reason": _start_reason(baselines, pick, len(selection_pool(sess))),
        }
        best, _ = update_best([], [b for b in baselines if b["finished"]], st.keep_best)
    start = tuple(begin["prompt"])
    return {
        "run_id": state.get("run_id") or new_run_id(sess.task.name),
        "step": 0,
        "prompt": list(start),
        "prompt_text": sess.rt.decode(start),
        "position": 0,
        "baseline": baseline,
        "start": begin,
        "baselines": baselines,
        "warm_start": warm,
        "history": [],
        "best": best,
        "stale": 0,
        "deleted_phrases": [],
        "done": st.steps == 0,
        "stop_reason": "no steps asked for" if st.steps == 0 else "",
        "timings": {},
    }
