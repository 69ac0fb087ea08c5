"""What a run's report says, read from its checkpointed state: no model is needed for it.

A run explains itself through its history: per step the current prompt's score on the selection pool, the
update taken and by whom, the edit limit, every candidate with its source, and the seconds each
node took. This module turns that into plain rows; :mod:`graph.report_render` draws and writes
them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gradprompt.nodes.approve import word_diff
from gradprompt.nodes.edit_limit import word_distance
from gradprompt.nodes.proposers import source_totals

SOURCES = ("gradient", "phrase", "retrieval", "refinement", "human")
COUNTS = ("offered", "raced", "finished", "accepted")


@dataclass
class StepRow:
    step: int
    position: int
    prompt: str  # the prompt the step started from
    accepted: str  # the prompt after the step
    changed: bool
    source: str  # where the accepted prompt came from ("current" when kept)
    by: str  # "optimizer" or "human"
    current_accuracy: float | None
    current_score: float | None
    accepted_accuracy: float | None
    accepted_score: float | None
    edit_limit: int | None
    words_changed: int
    candidates: int
    timings: dict[str, float]
    dev_accuracy: float | None = None  # of the accepted prompt, when it was scored on dev


@dataclass
class RunReport:
    run_id: str
    settings: dict
    status: str
    steps: list[StepRow]
    final: dict
    baseline: str
    sources: dict[str, dict[str, int]]  # source -> offered, raced, finished (the pool), accepted
    evolution: list[dict]  # accepted changes: step, source, by, before, after, diff
    node_seconds: dict[str, float]
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def dev_points(self) -> list[tuple[int, float]]:
        return [(r.step, r.dev_accuracy) for r in self.steps if r.dev_accuracy is not None]


def _dev_by_text(values: dict, extra: dict[str, float] | None) -> dict[str, float]:
    final = values.get("final") or {}
    out = {c["text"]: c["dev_accuracy"] for c in final.get("dev_candidates", [])}
    out.update(extra or {})
    return out


def build_report(values: dict, dev_scores: dict[str, float] | None = None) -> RunReport:
    """Rows of every recorded step. ``dev_scores`` (prompt text -> dev accuracy) adds dev points
    beyond those the run's final choice measured."""
    history = values.get("history", [])
    dev = _dev_by_text(values, dev_scores)
    steps, evolution = [], []
    sources = {s: dict.fromkeys(COUNTS, 0) for s in SOURCES}
    for s, counts in source_totals(history).items():
        sources.setdefault(s, dict.fromkeys(COUNTS, 0)).update(counts)
    node_seconds: Counter = Counter()
    rejected: Counter = Counter()
    for h in history:
        acc, cur = h["accepted"], h["current"]
        by = acc.get("by", "optimizer")
        source = acc.get("source", "current") if h["changed"] else "current"
        if "sources" not in h:  # a run recorded before per-source counts: its candidates were all raced
            for c in h["candidates"]:
                row = sources.setdefault(c.get("source", "gradient"), dict.fromkeys(COUNTS, 0))
                row["offered"] += 1
                row["raced"] += 1
                row["finished"] += c.get("examples") == cur.get("examples")
                row["accepted"] += h["changed"] and c["prompt"] == acc["prompt"] and c.get("source") == source
        node_seconds.update(h.get("timings", {}))
        rejected.update(h.get("rejected") or {})
        words = word_distance(h["prompt_text"], acc.get("text", h["prompt_text"]))
        steps.append(
            StepRow(
                step=h["step"],
                position=h["position"],
                prompt=h["prompt_text"],
                accepted=acc.get("text", h["prompt_text"]),
                changed=h["changed"],
                source=source,
                by=by,
                current_accuracy=cur.get("accuracy"),
                current_score=cur.get("score"),
                accepted_accuracy=acc.get("accuracy"),
                accepted_score=acc.get("score"),
                edit_limit=h.get("edit_limit"),
                words_changed=words,
                candidates=len(h["candidates"]),
                timings=dict(h.get("timings", {})),
                dev_accuracy=dev.get(acc.get("text", h["prompt_text"])),
            )
        )
        if h["changed"]:
            evolution.append(
                {
                    "step": h["step"],
                    "source": source,
                    "by": by,
                    "before": h["prompt_text"],
                    "after": acc.get("text", ""),
                    "diff": word_diff(h["prompt_text"], acc.get("text", "")),
                    "score_before": cur.get("score"),
                    "score_after": acc.get("score"),
                }
            )
    final = values.get("final") or {}
    if final:
        node_seconds["finalize"] = (values.get("timings") or {}).get("finalize", 0.0)
    status = values.get("status_text") or ("finished" if final else "stopped")
    return RunReport(
        run_id=values["run_id"],
        settings=values["settings"],
        status=status,
        steps=steps,
        final=final,
        baseline=values.get("baseline", {}).get("text", ""),
        sources=sources,
        evolution=evolution,
        node_seconds=dict(node_seconds),
        rejected=dict(rejected),
    )


def step_prompts(values: dict) -> dict[str, tuple[int, ...]]:
    """Every distinct prompt a step ended with (text -> token ids), for scoring the path on dev."""
    base = values.get("baseline", {})
    out = {base.get("text", ""): tuple(base.get("prompt", ()))}
    for h in values.get("history", []):
        acc = h["accepted"]
        out.setdefault(acc.get("text", h["prompt_text"]), tuple(acc.get("prompt", h["prompt"])))
    return out
