"""Scoring prompts the way runs do, and writing a run's report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from gradprompt.errors import GradpromptError
from gradprompt.graph.lifecycle import make_settings
from gradprompt.graph.run_index import run_values
from gradprompt.nodes.decisions import paired_gain
from gradprompt.nodes.finalize import majority_rate
from gradprompt.nodes.greater import rollout
from gradprompt.nodes.session import load_inputs, session
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.tasks.confidence import wilson_interval
from gradprompt.store.checkpoints import open_runs


def _scored(r, weight: float) -> dict:
    low, high = wilson_interval(sum(r.correct), len(r.correct))
    said = Counter(a.strip() for a in r.answers).most_common(1)
    return {
        "accuracy": r.accuracy,
        "right": sum(r.correct),
        "ci95": [low, high],
        "prompt_nll": r.nll,
        "score": r.score(weight),
        "most_common_answer": {"answer": said[0][0], "share": said[0][1] / len(r.answers)} if said else None,
    }


def evaluate_prompts(
    task: str, prompts: list[str], model: str = "smollm2", split: str = "dev", show: int = 0, **settings: Any
) -> dict:
    """Score ``prompts`` on the same examples of a split, exactly as runs score them, and compare
    every prompt after the first with the first, paired on those examples (accuracy difference with
    its 95% interval and the exact two-sided McNemar p-value, the final choice's test). ``show``
    returns that many examples with each prompt's reasoning, the text read as its answer and the
    gold answer, so a number can be checked against what the model wrote."""
    if split not in ("train", "dev", "test"):
        raise GradpromptError(f"unknown split {split!r}: use train, dev or test")
    if not prompts:
        raise GradpromptError("no prompt to evaluate: pass --prompt TEXT (several to compare them)")
    s = make_settings(task, model=model, **settings)
    load_inputs(s)
    sess = session(s)
    examples = getattr(sess.splits, split)
    if not examples:
        raise GradpromptError(f"the {split} split is empty: pass --{split} N with N > 0")
    ids = [tuple(sess.rt.encode_prompt(p)) for p in prompts]
    rolled = rollout(sess.rt, sess.readout, examples, ids, s.max_new_tokens, label=f"{split} evaluation")
    first = rolled[0]
    comparisons = [
        {"prompt": i, "against": 0, **paired_gain(r.correct, first.correct).to_json()}
        for i, r in enumerate(rolled[1:], start=1)
    ]
    shown = [
        {
            "question": ex.question,
            "gold": ex.answer,
            "by_prompt": [
                {"reasoning": sess.rt.decode(r.reasonings[k]), "answer": r.answers[k], "correct": r.correct[k]}
                for r in rolled
            ],
        }
        for k, ex in enumerate(examples[: max(show, 0)])
    ]
    return {
        "task": task,
        "model": model,
        "split": split,
        "examples": len(examples),
        "readout": "choice" if sess.readout.chooses else "generate",
        "max_new_tokens": s.max_new_tokens,
        "majority_answer": majority_rate(sess, examples),
        "prompts": [{"prompt": p, **_scored(r, s.score_nll_weight)} for p, r in zip(prompts, rolled, strict=True)],
        "comparisons": comparisons,
        "shown": shown,
    }


def evaluate_prompt(task: str, prompt: str, model: str = "smollm2", split: str = "dev", **settings: Any) -> dict:
    """Accuracy of ``prompt`` on a split with its Wilson interval, computed exactly as runs compute
    it (see :func:`evaluate_prompts` to compare several prompts or see examples)."""
    out = evaluate_prompts(task, [prompt], model=model, split=split, **settings)
    (scored,) = out.pop("prompts")
    out.pop("comparisons")
    return {**out, **scored, "prompt": prompt}


def report(
    run_id: str, *, out=None, fmt: str = "html", score_dev: bool = False, run_dir=None, checkpointer=None
) -> Path:
    """Write a run's report (``html``: one self-contained file; ``md``: Markdown + PNGs) into
    ``out`` (default: the run's folder) and return its path. The report reads the checkpoint only;
    ``score_dev`` also scores every prompt the run moved through on the dev split (loads the model),
    so the dev curve has a point per step, not only for the prompts the final choice compared."""
    from gradprompt.graph.report_render import write_report
    from gradprompt.graph.run_report import build_report, step_prompts

    if fmt not in ("html", "md"):
        raise GradpromptError(f"unknown report format {fmt!r}: use html or md")
    values = run_values(run_id, run_dir=run_dir, checkpointer=checkpointer)
    if not values.get("history") and not values.get("final"):
        raise GradpromptError(f"run {run_id} has no finished step yet: resume it, then ask for its report")
    extra = None
    if score_dev:
        from gradprompt.graph.run_inputs import with_run_inputs

        with_run_inputs(open_runs(run_dir, checkpointer), run_id, values["settings"])
        sess = session(RunSettings.model_validate(values["settings"]))
        prompts = step_prompts(values)
        rolled = rollout(
            sess.rt,
            sess.readout,
            sess.splits.dev,
            list(prompts.values()),
            sess.settings.max_new_tokens,
            label="dev evaluation of every step",
        )
        extra = {t: r.accuracy for t, r in zip(prompts, rolled, strict=True)}
    folder = Path(out) if out else open_runs(run_dir, checkpointer).folder(run_id)
    return write_report(build_report(values, extra), folder, fmt)
