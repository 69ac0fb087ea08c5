"""Test accuracy of the optimized prompt against fixed baselines, task by task, with 95% intervals.

For every task it runs one optimization with the same settings and seed (race candidates on the
train split, choose on dev, report on test; the splits are disjoint and fixed by the seed), then
scores four prompts on the same test examples: no prompt, "Let's think step by step.", the initial
prompt the search started from, and the optimized prompt (the initial one when the run kept it).
Per task it reports the paired test gain of the optimized prompt over the initial one with its 95%
interval and exact McNemar p-value, the majority-answer rate, and the time and model calls and
tokens spent; over tasks, the mean of each column and of the gain with a 95% t-interval.

Every finished task is saved as ``OUT/tasks/NAME.json`` and a task's run is checkpointed like any
run, so an interrupted benchmark started again with the same command skips finished tasks and
resumes the unfinished ones from their last node. Tasks go through ``gradprompt sweep``'s path:
``--workers N`` runs N tasks at a time as Ray tasks (the trajectory folder is then served to them
by a local ``chroma run`` server); the default, one worker, runs them in this process. The
summary is ``OUT/results.md`` (the table), ``OUT/results.json`` and ``OUT/accuracy.png``.

    python benchmarks/accuracy.py                                   # every task in ../shared/data
    python benchmarks/accuracy.py --data DIR --tasks bbh/navigate gsm8k folio
    python benchmarks/accuracy.py --tasks builtin:compare --steps 1 --train 8 --dev 8 --test 8
    python benchmarks/accuracy.py --workers 2                       # two tasks at a time
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradprompt.errors import GradpromptError  # noqa: E402
from gradprompt.graph.api import make_settings, resume, start_run  # noqa: E402
from gradprompt.graph.sweep import PlannedRun, SweepOutcome, sweep  # noqa: E402
from gradprompt.nodes.finalize import RULES  # noqa: E402
from gradprompt.nodes.greater import rollout  # noqa: E402
from gradprompt.nodes.proposers import source_totals  # noqa: E402
from gradprompt.nodes.session import rollouts, session  # noqa: E402
from gradprompt.nodes.tasks.confidence import wilson_interval  # noqa: E402
from gradprompt.store.checkpoints import list_run_ids  # noqa: E402

STEP_BY_STEP = "Let's think step by step."
DEFAULT_INITIAL = "Answer the question."
# What a person would first write for each classification task: the second starting point.
TASK_INSTRUCTIONS = {
    "fsc/sst-2": "Classify the sentiment of the review.",
    "fsc/agnews": "What is the topic of this news article?",
    "fsc/trec": "What kind of answer does this question ask for?",
}
PROMPTS = ("empty", "step_by_step", "initial", "optimized")
LABELS = {
    "empty": "no prompt",
    "step_by_step": "step by step",
    "initial": "initial",
    "optimized": "optimized",
}
# Settings that change results; a benchmark folder holds results for one combination only.
FIXED = (
    "model",
    "seed",
    "steps",
    "train",
    "dev",
    "test",
    "batch_size",
    "max_new_tokens",
    "readout",
    "initial_prompt",
    "refine",
    "moves",
    "fluency_weight",
    "fluency_max_cost",
    "reading_top_k",
    "phrase_edits",
    "baselines",
    "final_rule",
    "n_evaluate",
    "acceptance",
    "race_alpha",
    "final_alpha",
)


def default_data_dir() -> Path | None:
    env = os.environ.get("GRADPROMPT_DATA_DIR")
    if env:
        return Path(env)
    shared = ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def task_specs(data: Path | None, names: list[str] | None) -> dict[str, str]:
    """Benchmark name -> task spec. Names are ``bbh/TASK``, ``fsc/TASK`` (classification JSONL),
    ``gsm8k``, ``folio`` (inside the data folder) or any task spec such as ``builtin:compare``."""

    def in_data(name: str) -> str:
        if data is None:
            raise GradpromptError(
                f"task {name!r} needs the benchmark data folder: pass --data DIR or set GRADPROMPT_DATA_DIR"
            )
        if name.startswith("bbh/"):
            path = data / "bbh" / f"{name[4:]}.json"
            if not path.is_file():
                raise GradpromptError(f"no BBH file {path}: see the task names in {data / 'bbh'}")
            return f"bbh:{path}"
        if name.startswith("fsc/"):
            path = data / "fsc" / f"{name[4:]}.jsonl"
            if not path.is_file():
                raise GradpromptError(f"no classification file {path}: see the task names in {data / 'fsc'}")
            return f"jsonl:{path}"
        if name in ("gsm8k", "folio"):
            if not (data / name).is_dir():
                raise GradpromptError(f"no {name} folder in {data}")
            return f"{name}:{data / name}"
        raise GradpromptError(
            f"unknown benchmark task {name!r}: use bbh/NAME, fsc/NAME, gsm8k, folio or a spec like builtin:compare"
        )

    if names:
        return {n.replace(":", "-").replace("/", "-") if ":" in n else n: n if ":" in n else in_data(n) for n in names}
    if data is None:
        raise GradpromptError("no benchmark data found: pass --data DIR (holding bbh/, gsm8k/, folio/) or --tasks")
    found = [f"bbh/{p.stem}" for p in sorted((data / "bbh").glob("*.json"))]
    found += [n for n in ("gsm8k", "folio") if (data / n).is_dir()]
    found += [f"fsc/{p.stem}" for p in sorted((data / "fsc").glob("*.jsonl"))]
    if not found:
        raise GradpromptError(f"{data} holds no bbh/*.json, fsc/*.jsonl, gsm8k/ or folio/: pass --data or --tasks")
    return {n: in_data(n) for n in found}


def settings_key(fixed: dict) -> str:
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:12]


JUDGING = ("final_rule",)  # settings that only pick which recorded verdict a row reports


def check_out_folder(out: Path, fixed: dict) -> None:
    """A benchmark folder belongs to one set of settings; mixing them would mix incomparable rows.
    The final rule is the exception: every row records every rule's verdict, so another rule only
    changes which one the rows report (the folder's settings then record the new rule)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(fixed) if k not in JUDGING and before.get(k) != fixed.get(k))
        if changed:
            raise GradpromptError(
                f"{out} holds results for other settings ({', '.join(changed)} differ): "
                "pass another --out, or delete that folder to start over"
            )
        if before == fixed:
            return
    path.write_text(json.dumps(fixed, indent=2))


def score(correct: int, n: int) -> dict:
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n, "correct": correct, "n": n, "ci95": [round(low, 4), round(high, 4)]}


def bench_run_id(name: str, fixed: dict) -> str:
    return f"bench-{name.replace('/', '-')}-{settings_key(fixed)}"


def run_task(name: str, spec: str, fixed: dict, common: dict, out: Path, store: str | None = None) -> dict:
    """Optimize one task (or resume its run) and score the four prompts on its test split."""
    runs = out / "runs"
    run_id = bench_run_id(name, fixed)
    settings = task_settings(name, spec, fixed, common, out, store)
    start = time.perf_counter()
    sess = session(settings)
    usage_before = sess.rt.usage.snapshot()
    resumed = run_id in list_run_ids(runs)
    result = resume(run_id, run_dir=runs) if resumed else start_run(settings, run_dir=runs, run_id=run_id)
    fmt, test = sess.task.answer_format, sess.splits.test
    n = len(test)
    if n == 0:
        raise GradpromptError(f"task {name} has no test examples: raise --test")
    extra = {"empty": "", "step_by_step": STEP_BY_STEP}
    ids = {k: tuple(sess.rt.encode_prompt(t)) for k, t in extra.items()}
    rolled = rollout(
        sess.rt, sess.readout, test, list(ids.values()), settings.max_new_tokens, label=f"{name}: baselines on test"
    )
    correct = {k: sum(r.correct) for k, r in zip(ids, rolled, strict=True)}
    correct["initial"] = round(result.scores["baseline"]["test"] * n)
    correct["optimized"] = round(result.scores["best"]["test"] * n)
    final = result.final
    usage = sess.rt.usage.snapshot() - usage_before
    row = {
        "task": name,
        "spec": spec,
        "answer_type": str(fmt.kind),
        "run_id": run_id,
        "test_examples": n,
        "dev_examples": result.dev_examples,
        "scores": {k: score(correct[k], n) for k in PROMPTS},
        "prompts": {
            "empty": "",
            "step_by_step": STEP_BY_STEP,
            "initial": result.baseline_prompt,
            "optimized": result.best_prompt,
        },
        "dev": result.scores,
        "gain": final["gain"]["test"],
        "dev_gain": final["gain"]["dev"],
        "kept_initial": final["kept_initial"],
        "reason": final["reason"],
        "majority_answer": final["majority_answer"],
        "start": final.get("start"),
        "known_words": final["best"].get("known_words"),
        "rules": final.get("rules"),
        "sources": source_totals(result.history),
        "steps": result.steps,
        "seconds": round(time.perf_counter() - start, 1),
        "usage": usage.to_json(),
        "resumed": resumed,  # time and usage then cover only the part run in the last process
    }
    return row


def task_settings(name: str, spec: str, fixed: dict, common: dict, out: Path, store: str | None = None):
    """The run's settings; a task named in ``task_prompts`` starts from its own initial prompt."""
    own = {k: v for k, v in fixed.items() if k != "task_prompts"}
    own["initial_prompt"] = (fixed.get("task_prompts") or {}).get(name, fixed["initial_prompt"])
    return make_settings(spec, **own, **common, store=store or str(out / "trajectory"))


def finish_row(row: dict, spec: str, fixed: dict, common: dict, out: Path, trace: bool, store: str | None) -> bool:
    """Add the checks a row lacks (also to rows finished before a check existed); True if any was added."""
    missing = {"dev_leader": audit_dev_leader, **({"trace": trace_steps} if trace else {})}
    missing = {k: f for k, f in missing.items() if k not in row}
    if set(row.get("rules") or ()) != set(RULES) and (out / "runs").is_dir():
        missing["rules"] = judge_again
    for key, check in missing.items():
        row[key] = check(row, task_settings(row["task"], spec, fixed, common, out, store), out / "runs")
    rule = fixed["final_rule"]
    verdict = (row.get("rules") or {}).get(rule)
    reported = bool(verdict) and verdict["reason"] != row["reason"]  # the row reports another rule's verdict
    if reported:
        headline_from_rules(row, rule)
    return bool(missing) or reported


def bench_job(context: dict, run: PlannedRun, settings: dict, run_dir, checkpointer, cwd) -> SweepOutcome:
    """One task of the benchmark as a sweep job: optimize (or resume), score on test, save the row."""
    name = context["names"][run.run_id]
    store = settings.get("store")
    outcome = SweepOutcome(run.run_id, run.task, run.model, run.seed, status="failed")
    try:
        row = run_task(name, run.task, context["fixed"], context["common"], context["out"], store)
        finish_row(row, run.task, context["fixed"], context["common"], context["out"], context["trace"], store)
    except GradpromptError as exc:
        outcome.error = str(exc)
        return outcome
    _write_row(context["out"] / "tasks" / f"{name.replace('/', '-')}.json", row)
    outcome.status, outcome.extra = "finished", {"task": name}
    return outcome


def _on_test(settings, runs: Path, prompts: list[tuple[int, ...]]) -> list:
    """Test rollouts of prompts through the run folder's rollout cache (the initial prompt's are
    already there from finalize, so only new prompts cost model calls)."""
    from gradprompt.store.checkpoints import open_rollout_store

    with open_rollout_store(runs) as store:
        sess = session(settings, cache_store=store)
        return rollouts(sess, sess.splits.test, prompts)


def audit_dev_leader(row: dict, settings, runs: Path) -> dict | None:
    """The test gain the run's dev leader would have had over the initial prompt. Not something a
    user gets (the final choice kept the initial prompt unless the leader's dev lead was
    significant): it checks that choice, showing whether the leads it turned down were real."""
    from gradprompt.graph.api import run_values
    from gradprompt.nodes.decisions import paired_gain

    final = run_values(row["run_id"], run_dir=runs).get("final") or {}
    if final.get("dev_leader") is None:
        return None
    leader = final["dev_candidates"][final["dev_leader"]]
    lead, base = _on_test(settings, runs, [tuple(leader["prompt"]), tuple(final["baseline"]["prompt"])])
    return {
        "text": leader["text"],
        "dev_accuracy": leader["dev_accuracy"],
        "test_accuracy": lead.accuracy,
        "test_gain": paired_gain(lead.correct, base.correct).to_json(),
    }


def judge_again(row: dict, settings, runs: Path) -> dict:
    """Every final rule's verdict on a finished run, from its cached dev rollouts: a run finished
    before a rule existed gets that rule's pick and its test gain without searching again, and the
    dev-leader audit over the finalists judged now (:func:`headline_from_rules` then sets the row's
    returned prompt as the run's rule decides it)."""
    from gradprompt.graph.api import run_values
    from gradprompt.nodes.decisions import paired_gain
    from gradprompt.nodes.finalize import final_choices, rule_picks, rules_summary
    from gradprompt.store.checkpoints import open_rollout_store

    values = run_values(row["run_id"], run_dir=runs)
    with open_rollout_store(runs) as store:
        sess = session(settings, cache_store=store)
        judged, dev, choices = final_choices(sess, values)
        picks = rule_picks(judged, choices)
        leader = choices[settings.final_rule].leader + 1  # 0: there was no finalist
        wanted = list(dict.fromkeys([judged[0], *picks.values(), judged[leader]]))
        test = dict(zip(wanted, rollouts(sess, sess.splits.test, wanted), strict=True))
    row["dev_leader"] = None  # the audit of the final choice, among the finalists judged now
    if leader:
        row["dev_leader"] = {
            "text": sess.rt.decode(judged[leader]),
            "dev_accuracy": dev[leader].accuracy,
            "test_accuracy": test[judged[leader]].accuracy,
            "test_gain": paired_gain(test[judged[leader]].correct, test[judged[0]].correct).to_json(),
        }
    return rules_summary(sess, choices, picks, dict(zip(judged, dev, strict=True)), test)


def headline_from_rules(row: dict, rule: str) -> None:
    """The row's returned prompt and its numbers as ``rule`` decides them from the same dev and test
    rollouts (after the rules were judged again); the row says it was judged again."""
    from gradprompt.nodes.readability import readability

    verdict = row["rules"][rule]
    gain = verdict["test_gain"]
    initial = row["scores"]["initial"]["correct"]
    row["prompts"]["optimized"] = verdict["text"]
    row["scores"]["optimized"] = score(initial + gain["only_new_right"] - gain["only_old_right"], row["test_examples"])
    row.update(
        gain=gain,
        dev_gain=verdict["dev_gain"],
        kept_initial=verdict["kept_initial"],
        reason=verdict["reason"],
        known_words=readability(verdict["text"])["known_words"],
        judged_again=rule,
    )


def trace_steps(row: dict, settings, runs: Path) -> list[dict]:
    """The test gain over the initial prompt of the prompt the search held after each step: how
    the gain grows (or not) with the number of steps, from one run."""
    from gradprompt.graph.api import run_values
    from gradprompt.nodes.decisions import paired_gain

    values = run_values(row["run_id"], run_dir=runs)
    initial = tuple(values["final"]["baseline"]["prompt"])
    held = [tuple(h["accepted"]["prompt"]) for h in values.get("history", [])]
    wanted = list(dict.fromkeys([initial, *held]))
    rolled = dict(zip(wanted, _on_test(settings, runs, wanted), strict=True))
    return [
        {
            "step": i + 1,
            "text": h["accepted"]["text"],
            "changed": h["changed"],
            "test_accuracy": rolled[p].accuracy,
            "test_gain": paired_gain(rolled[p].correct, rolled[initial].correct).to_json(),
        }
        for i, (h, p) in enumerate(zip(values.get("history", []), held, strict=True))
    ]


def _write_row(path: Path, row: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=2))
    tmp.replace(path)


def resumable_rows(
    out: Path, specs: dict[str, str], measure: Callable[[str, str], dict], done: Callable[[list[dict]], None]
) -> list[dict]:
    """One row per task, as ``OUT/tasks/NAME.json``: a task an earlier run finished is read back, any
    other is measured and saved at once (written whole, then renamed), so a benchmark stopped
    halfway resumes where it stopped. ``done`` sees the rows so far after each new one."""
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    rows = []
    for name, spec in specs.items():
        path = out / "tasks" / f"{name.replace('/', '-')}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        rows.append(measure(name, spec))
        _write_row(path, rows[-1])
        done(rows)
    return rows


def mean_interval(values: list[float]) -> dict:
    """Mean over tasks with a 95% t-interval (tasks as the unit; none with a single task)."""
    from scipy import stats

    m = statistics.fmean(values)
    if len(values) < 2 or statistics.pstdev(values) == 0:
        return {"mean": m, "ci95": [m, m] if len(values) > 1 else None}
    low, high = stats.t.interval(0.95, len(values) - 1, loc=m, scale=stats.sem(values))
    return {"mean": m, "ci95": [float(low), float(high)]}


def cell(s: dict) -> str:
    """An accuracy with its 95% interval, as every table of the benchmarks shows one."""
    return f"{s['accuracy']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def gain_cell(g: dict) -> str:
    """A paired gain with its interval and p-value, so no table shows a difference bare."""
    return f"{g['gain']:+.3f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}] p={g['p_value']:.2f}"


def mean_cell(m: dict) -> str:
    """A mean over tasks, in bold, with its interval when there are enough tasks for one."""
    ci = m["ci95"]
    return f"**{m['mean']:.3f}**" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def write_summary(out: Path, rows: list[dict], fixed: dict, planned: int | None = None) -> None:
    """The Markdown table, the JSON and the chart, from every finished task in the folder."""
    mean = {k: mean_interval([r["scores"][k]["accuracy"] for r in rows]) for k in PROMPTS}
    gain = mean_interval([r["gain"]["gain"] for r in rows])
    majority = mean_interval([r["majority_answer"]["accuracy"] for r in rows])
    worse = [r["task"] for r in rows if r["gain"]["ci95"][1] < 0]
    better = [r["task"] for r in rows if r["gain"]["ci95"][0] > 0]
    leaders = [r["dev_leader"] for r in rows if r.get("dev_leader")]
    leader_gain = mean_interval([d["test_gain"]["gain"] for d in leaders]) if leaders else None
    summary = {
        "dev_leader_test_gain": leader_gain,
        "mean": mean,
        "gain": gain,
        "majority": majority,
        "significantly_worse": worse,
        "significantly_better": better,
    }
    (out / "results.json").write_text(json.dumps({"settings": fixed, "tasks": rows, **summary}, indent=2))

    lines = [
        "| task | n test | majority | "
        + " | ".join(LABELS[k] for k in PROMPTS)
        + " | gain over initial | kept initial | time (s) | model calls |",
        "|---|---:|---:|" + "---|" * len(PROMPTS) + "---|:-:|---:|---:|",
    ]
    for r in rows:
        u = r["usage"]
        lines.append(
            f"| {r['task']} | {r['test_examples']} | {r['majority_answer']['accuracy']:.2f} | "
            + " | ".join(cell(r["scores"][k]) for k in PROMPTS)
            + f" | {gain_cell(r['gain'])} | {'yes' if r['kept_initial'] else 'no'}"
            + f" | {r['seconds']:.0f} | {u['calls']} |"
        )
    total_s = sum(r["seconds"] for r in rows)
    calls = sum(r["usage"]["calls"] for r in rows)
    g = gain
    gain_mean = f"**{g['mean']:+.3f}**" + (f" [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]" if g["ci95"] else "")
    lines.append(
        f"| **mean of {len(rows)} tasks** | | {majority['mean']:.2f} | "
        + " | ".join(mean_cell(mean[k]) for k in PROMPTS)
        + f" | {gain_mean} | {sum(not r['kept_initial'] for r in rows)} changed | {total_s:.0f} | {calls} |"
    )
    lines.append("")
    if planned is not None and planned > len(rows):
        lines.append(f"**Partial: {len(rows)} of {planned} tasks finished so far.**")
        lines.append("")
    lines.append(
        f"Accuracy on each task's test split with its 95% Wilson interval; the gain is the paired test "
        f"difference optimized minus initial on the same examples (95% Agresti-Min interval, exact McNemar "
        f"p-value); means over tasks carry a 95% t-interval over tasks. Tasks significantly worse than the "
        f"initial prompt: {', '.join(worse) or 'none'}; significantly better: {', '.join(better) or 'none'}. "
        f"Model {fixed['model']}, seed {fixed['seed']}, {fixed['steps']} steps, "
        f"{fixed['train']}/{fixed['dev']}/{fixed['test']} train/dev/test examples, gradient batch "
        f"{fixed['batch_size']}, {fixed['n_evaluate']} gradient candidates raced per step, acceptance "
        f"{fixed['acceptance']}, "
        + (f"reasoning up to {fixed['max_new_tokens']} tokens" if fixed["max_new_tokens"] else "direct answers")
        + f", {fixed.get('readout', 'generate')} readout, initial prompt "
        + ("per task (below)" if fixed.get("task_prompts") else repr(fixed["initial_prompt"]))
        + f", refinement {'on' if fixed['refine'] else 'off'}, {fixed.get('moves', 'tokens')} moves, final rule "
        f"{fixed.get('final_rule', 'bonferroni')}, {fixed.get('dtype', 'float32')} weights."
    )
    if leader_gain is not None:
        lc = leader_gain["ci95"]
        lines += [
            "",
            "Check of the final choice: had every run taken its best prompt on dev other than the initial one, "
            "whatever the significance, the mean "
            f"paired test gain over the initial prompt would have been {leader_gain['mean']:+.3f}"
            + (f" [{lc[0]:+.3f}, {lc[1]:+.3f}]" if lc else "")
            + f" over {len(leaders)} tasks (per task in results.json, `dev_leader`).",
        ]
    lines += found_table(rows)
    lines += trace_table(rows)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(out / "accuracy.png", rows)


def found_table(rows: list[dict]) -> list[str]:
    """What each run handed back and why: the prompt it started the search from (the best of the
    baselines raced before step 0), the prompt it returned with its share of dictionary words, the
    test gain each final rule's pick would have had, and which proposers the accepted moves came from."""
    rows = [r for r in rows if r.get("rules")]
    if not rows:
        return []
    rules = list(rows[0]["rules"])
    lines = [
        "",
        "What each run returned. Known words: the share of the returned prompt's words that are common "
        "English words (wordfreq Zipf frequency at least 2), so 1.00 means no fragment and no non-word. "
        "A rule's pick: the test gain over the initial prompt of the prompt that final rule would hand back "
        "(paired, 95% interval, exact McNemar p).",
        "",
        "| task | initial prompt | search started from | dev leader | returned prompt | known words | "
        + " | ".join(f"{r} pick" for r in rules)
        + " | moves accepted by source |",
        "|---|---|---|---|---|---:|" + "---|" * len(rules) + "---|",
    ]
    for r in rows:
        start = (r.get("start") or {}).get("name", "initial")
        moved = ", ".join(f"{k} {v['accepted']}" for k, v in sorted(r["sources"].items()) if v.get("accepted"))
        picks = [
            ("kept initial " if c["kept_initial"] else "") + (gain_cell(c["test_gain"]) if c["test_gain"] else "")
            for c in r["rules"].values()
        ]
        known = r.get("known_words")
        leader = (r.get("dev_leader") or {}).get("text")
        lines.append(
            f"| {r['task']} | {r['prompts']['initial']!r} | {start} | {'-' if leader is None else repr(leader)} | "
            f"{r['prompts']['optimized']!r} | "
            + ("" if known is None else f"{known:.2f}")
            + " | "
            + " | ".join(picks)
            + f" | {moved or 'none'} |"
        )
    return lines


def trace_table(rows: list[dict]) -> list[str]:
    """Gain against steps, for the tasks run with ``--trace``: per task and the mean over them."""
    traced = [r for r in rows if r.get("trace")]
    if not traced:
        return []
    steps = max(len(r["trace"]) for r in traced)
    lines = [
        "",
        "Test gain over the initial prompt of the prompt the search held after each step (paired, same "
        "test examples; the mean over tasks with its 95% t-interval):",
        "",
        "| step | " + " | ".join(r["task"].removeprefix("bbh/") for r in traced) + " | mean |",
        "|---:|" + "---:|" * (len(traced) + 1),
    ]
    for i in range(steps):
        gains = [r["trace"][i]["test_gain"]["gain"] if i < len(r["trace"]) else None for r in traced]
        m = mean_interval([g for g in gains if g is not None])
        ci = f" [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}]" if m["ci95"] else ""
        lines.append(
            f"| {i + 1} | " + " | ".join("" if g is None else f"{g:+.3f}" for g in gains) + f" | {m['mean']:+.3f}{ci} |"
        )
    return lines


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(PROMPTS)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 4.5))
    for i, k in enumerate(PROMPTS):
        xs = [j + (i - (len(PROMPTS) - 1) / 2) * width for j in range(len(rows))]
        acc = [r["scores"][k]["accuracy"] for r in rows]
        err = [
            [a - r["scores"][k]["ci95"][0] for a, r in zip(acc, rows, strict=True)],
            [r["scores"][k]["ci95"][1] - a for a, r in zip(acc, rows, strict=True)],
        ]
        ax.bar(xs, acc, width, yerr=err, capsize=2, label=LABELS[k])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["task"].removeprefix("bbh/") for r in rows], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (95% interval)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=len(PROMPTS))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _row_path(out: Path, name: str) -> Path:
    return out / "tasks" / f"{name.replace('/', '-')}.json"


def _say(row: dict) -> None:
    s = row["scores"]
    print(
        f"{row['task']}: "
        + ", ".join(f"{LABELS[k]} {s[k]['accuracy']:.3f}" for k in PROMPTS)
        + f" ({row['test_examples']} test, {row['seconds']:.0f} s)",
        file=sys.stderr,
        flush=True,
    )


def run_all(args, specs: dict[str, str], fixed: dict, common: dict) -> None:
    """Finished tasks are kept (and given the checks they lack); the others run as one sweep."""
    out = args.out
    done = {}
    for name, spec in specs.items():
        path = _row_path(out, name)
        if path.is_file():
            row = json.loads(path.read_text())
            print(f"{name}: done earlier, kept", file=sys.stderr)
            if finish_row(row, spec, fixed, common, out, args.trace, None):
                _write_row(path, row)
            done[name] = row
    if done:
        write_summary(out, [done[n] for n in specs if n in done], fixed, len(specs))
    todo = [n for n in specs if n not in done]
    if not todo:
        return
    names = {bench_run_id(n, fixed): n for n in todo}
    runs = [PlannedRun(bench_run_id(n, fixed), specs[n], fixed["model"], fixed["seed"]) for n in todo]
    context = {"names": names, "fixed": fixed, "common": common, "out": out, "trace": args.trace}

    def progress(counts: dict[str, int], event: str) -> None:
        print(
            f"benchmark: {counts['done']} done, {counts['running']} running, {counts['failed']} failed of "
            f"{len(todo)} | {event}",
            file=sys.stderr,
            flush=True,
        )
        run_id = event.split(" ", 1)[0]
        if event.endswith(" finished") and run_id in names:
            row = json.loads(_row_path(out, names[run_id]).read_text())
            done[names[run_id]] = row
            _say(row)
            write_summary(out, [done[n] for n in specs if n in done], fixed, len(specs))  # every finished task

    settings = {k: v for k, v in fixed.items() if k not in ("model", "seed", "task_prompts")}
    outcomes = sweep(
        runs=runs,
        job=functools.partial(bench_job, context),
        skip_finished=False,  # a finished run may still lack its test scoring
        workers=args.workers,
        use_ray=args.workers > 1,
        run_dir=out / "runs",
        store=str(out / "trajectory"),
        on_progress=progress,
        **settings,
        **common,
    )
    failed = [o for o in outcomes if o.status != "finished"]
    if failed:
        raise GradpromptError(
            "; ".join(f"{names[o.run_id]} {o.status}: {o.error}" for o in failed)
            + " (start the benchmark again to resume them)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder (default ../shared/data)")
    parser.add_argument("--tasks", nargs="+", help="bbh/NAME, gsm8k, folio or task specs (default: all in --data)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--dev", type=int, default=48)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reasoning tokens (0: direct answers)")
    parser.add_argument(
        "--readout",
        choices=["choice", "generate"],
        default="choice",
        help="closed answer sets: the likeliest allowed answer (choice) or parse what the model writes (generate)",
    )
    parser.add_argument("--n-evaluate", type=int, default=4)
    parser.add_argument("--acceptance", choices=["always", "not_worse", "better"], default="not_worse")
    parser.add_argument("--moves", choices=["words", "tokens"], default="words", help="unit of a gradient edit")
    parser.add_argument(
        "--fluency-weight", type=float, default=0.0, help="fluency against the gradient in word moves (0: none)"
    )
    parser.add_argument(
        "--fluency-max-cost",
        type=lambda v: None if v.lower() == "none" else float(v),
        default=None,
        help="NLL a word move or phrase edit may add to the prompt read alone (nats; none: no limit)",
    )
    parser.add_argument(
        "--reading-top-k", type=int, default=0, help="words the model expects at the slot of the prompt read alone"
    )
    parser.add_argument("--phrase-edits", type=int, default=2, help="model-free phrase edits raced per step")
    parser.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="race the empty prompt and 'Let's think step by step.' against the initial one before step 0",
    )
    parser.add_argument("--final-rule", choices=list(RULES), default="shared_alpha")
    parser.add_argument("--race-alpha", type=float, default=0.2)
    parser.add_argument("--final-alpha", type=float, default=0.05)
    parser.add_argument("--initial-prompt", default=DEFAULT_INITIAL)
    parser.add_argument(
        "--task-instructions",
        action="store_true",
        help="start each classification task from its plain task instruction instead of --initial-prompt",
    )
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="chat-model refinement (off by default: the 135M model rarely writes a usable prompt)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also score on test the prompt the search held after each step (gain against steps)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="float32 or bfloat16 (auto: float32 on a CPU; bfloat16 is 2.6-3x faster on CPUs with native bf16)",
    )
    parser.add_argument("--workers", type=int, default=1, help="tasks at a time, as Ray tasks (default 1)")
    parser.add_argument(
        "--summary-only", action="store_true", help="rewrite the tables from the finished tasks, run nothing"
    )
    args = parser.parse_args(argv)
    try:
        fixed = {k: getattr(args, k) for k in FIXED}
        if args.task_instructions:
            fixed["task_prompts"] = TASK_INSTRUCTIONS
        if args.dtype != "auto":  # recorded only when chosen, so earlier folders still resume
            fixed["dtype"] = args.dtype
        common = {"keep_best": 4, "cross_task": False}
        specs = task_specs(args.data or default_data_dir(), args.tasks)
        check_out_folder(args.out, fixed)
        (args.out / "tasks").mkdir(exist_ok=True)
        if args.summary_only:
            done = [args.out / "tasks" / f"{n.replace('/', '-')}.json" for n in specs]
            rows = [json.loads(p.read_text()) for p in done if p.is_file()]
            if not rows:
                raise GradpromptError(f"{args.out} holds no finished task yet: run the benchmark first")
            write_summary(args.out, rows, fixed, len(specs))
            print((args.out / "results.md").read_text())
            return 0
        run_all(args, specs, fixed, common)
    except GradpromptError as exc:
        print(f"accuracy benchmark: {exc}", file=sys.stderr)
        return 2
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
