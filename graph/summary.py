"""The end of a run in words a person can act on: both prompts' dev and test accuracy with 95%
intervals, the paired gain over the initial prompt with its interval and p-value, what no prompt
and the majority answer reach on test, and one line on why the final prompt is what it is."""

from __future__ import annotations


def _acc(score: dict | None) -> str:
    if not score or score.get("accuracy") is None:
        return "-"
    low, high = score["ci95"]
    return f"{score['accuracy']:.3f} [{low:.2f}, {high:.2f}]"


def _gain(g: dict | None) -> str:
    if not g:
        return "-"
    low, high = g["ci95"]
    return f"{g['gain']:+.3f} [{low:+.2f}, {high:+.2f}] (two-sided p={g['p_value']:.2f}, n={g['n']})"


def summary_lines(final: dict) -> list[str]:
    """Lines describing a finished run's ``final`` state (empty when the run has not finished)."""
    if not final or "baseline" not in final:
        return []
    base, best = final["baseline"], final["best"]
    lines = [
        f"{'':10s} {'dev accuracy (95% CI)':>24s} {'test accuracy (95% CI)':>24s}  prompt",
        f"{'initial':10s} {_acc(base.get('dev')):>24s} {_acc(base.get('test')):>24s}  {base['text']!r}",
        f"{'final':10s} {_acc(best.get('dev')):>24s} {_acc(best.get('test')):>24s}  {best['text']!r}",
    ]
    gain = final.get("gain") or {}
    if final.get("kept_initial"):
        leader = gain.get("dev_leader")
        if leader and leader.get("n"):
            lines.append(f"best candidate minus initial on dev: {_gain(leader)}")
    else:
        lines.append(f"gain over the initial prompt: dev {_gain(gain.get('dev'))}; test {_gain(gain.get('test'))}")
    empty = (final.get("empty_prompt") or {}).get("test")
    step_by_step = (final.get("step_by_step") or {}).get("test")
    majority = final.get("majority_answer") or {}
    if empty or majority.get("accuracy") is not None:
        lines.append(
            f'on test: no prompt {_acc(empty)}; "Let\'s think step by step." {_acc(step_by_step)}; always '
            f"answering the most common answer ({majority.get('answer')!r}) {majority.get('accuracy') or 0:.3f}"
        )
    start = final.get("start")
    if start and start.get("name") != "initial":
        lines.append(f"the search started from {start.get('text')!r}: {start.get('reason')}")
    if best.get("known_words") is not None:
        lines.append(f"final prompt: {best['known_words']:.0%} of its words are dictionary words")
    if final.get("reason"):
        lines.append(final["reason"])
    return lines
