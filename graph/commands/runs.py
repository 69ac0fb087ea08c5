"""``gradprompt runs``: list, show, fork and answer runs; see what waits for a person."""

from __future__ import annotations

import argparse
import json
import sys

from gradprompt.graph.commands.common import fmt, where
from gradprompt.graph.commands.optimize import resume_and_report
from gradprompt.graph.commands.predict import add_export_parser
from gradprompt.graph.summary import summary_lines
from gradprompt.nodes.proposers import source_totals


def cmd_runs_pending(args: argparse.Namespace) -> int:
    from gradprompt.graph.approval_protocol import pending_runs
    from gradprompt.graph.approval_terminal import render_request

    runs = pending_runs(**where(args))
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print("no run is waiting for approval")
    from rich.console import Console

    console = Console()
    for r in runs:
        answered = (
            f" (answered: {r['answered']['action']}; run `gradprompt resume {r['run_id']}`)" if r["answered"] else ""
        )
        console.print(f"[bold]{r['run_id']}[/bold]{answered}")
        console.print(render_request(r["request"]))
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from gradprompt.graph.run_index import list_runs

    runs = list_runs(**where(args))
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print("no runs yet: start one with `gradprompt optimize --task builtin:compare`")
        return 0
    width = max(len("run id"), *(len(r["run_id"]) for r in runs))
    print(f"{'run id':{width}s} {'steps':>7s} {'best dev':>8s} {'test':>6s}  {'task':24s} status")
    for r in runs:
        if r["status"] == "damaged":
            print(f"{r['run_id']:{width}s} damaged: {r['problem']}")
            continue
        print(
            f"{r['run_id']:{width}s} {r['steps']:>3d}/{r['of_steps']:<3d} {fmt(r['best_dev']):>8s} "
            f"{fmt(r['best_test']):>6s}  {r['task']:24s} {r['status_text']}"
        )
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from gradprompt.graph.run_index import run_values

    values = run_values(args.run_id, **where(args))
    history = values.get("history", [])
    shown = {}
    if args.show:
        from gradprompt.graph.run_index import step_examples

        shown = step_examples(args.run_id, args.show, **where(args))
    if args.json:
        keep = {k: v for k, v in values.items() if k not in ("reasonings",)}
        if not args.history:
            keep.pop("history", None)
        if shown:
            keep["examples"] = shown
        print(json.dumps(keep, indent=2, default=str))
        return 0
    s = values.get("settings", {})
    print(f"run {args.run_id}: task {s.get('task')}, model {s.get('model')}, {s.get('variant')} variant")
    print(f"status: {values['status_text']}")
    print(
        f"steps finished: {values.get('step', 0)} of {s.get('steps')}"
        + (f" ({values['stop_reason']})" if values.get("stop_reason") else "")
        + (f"; next node: {', '.join(values['next'])}" if values.get("next") else "; finished")
    )
    print(f"current prompt: {values.get('prompt_text')!r}")
    spent = values.get("spent") or {}
    if spent:
        seconds, rolled = spent.get("seconds", 0), spent.get("rollouts", 0)
        print(f"spent: {seconds:.0f} s in the run's nodes, {rolled} rollouts generated")
    final = values.get("final") or {}
    for line in summary_lines(final):
        print(line)
    totals = source_totals(history)
    if totals:
        print("candidates by source (offered / raced / finished the pool / accepted):")
        for source, n in totals.items():
            print(f"  {source:10s} {n['offered']:5d} {n['raced']:5d} {n['finished']:5d} {n['accepted']:5d}")
    if args.history:
        for h in history:
            print()
            changed = "changed" if h["changed"] else "kept"
            times = ", ".join(f"{k} {v:.1f}s" for k, v in h.get("timings", {}).items())
            print(f"step {h['step']} position {h['position']} ({changed}): {h['prompt_text']!r}")
            cur = h["current"]
            print(
                f"  current   acc {fmt(cur.get('accuracy'))} on {cur.get('examples', '-')} "
                f"gold lp {fmt(cur.get('gold_logprob'))}"
            )
            for c in h["candidates"]:
                mark = "*" if c["prompt"] == h["accepted"]["prompt"] else " "
                how_far = c.get("stopped") or "ran the whole pool"
                words = "" if c.get("known_words") is None else f" words {c['known_words']:.0%}"
                if c.get("fluency_cost") is not None:
                    words += f" fluency {c['fluency_cost']:+.1f}"
                print(
                    f" {mark}{c['source']:10s} acc {fmt(c.get('accuracy'))} on {c.get('examples', '-')} "
                    f"gold lp {fmt(c.get('gold_logprob'))} grad {fmt(c.get('gradient'))}{words}  {c['text']!r}  "
                    f"[{how_far}]"
                )
            dropped = {k: v for k, v in (h.get("rejected") or {}).items() if v}
            if dropped:
                words = {
                    "held_before": "held before by this run (not raced: no cycles)",
                    "over_limit": "over the edit limit",
                    "disfluent": "reading worse than --fluency-max-cost allows",
                }
                print("  not raced: " + ", ".join(f"{v} {words.get(k, k)}" for k, v in dropped.items()))
            for k, ex in enumerate(shown.get(h["step"], []), start=1):
                print(f"  example {k}: {ex['question']!r} (gold {ex['gold']!r})")
                if ex["answer"] is None:
                    print("    not in the rollout cache")
                    continue
                if ex["reasoning"].strip():
                    print(f"    reasoning: {ex['reasoning'].strip()!r}")
                print(f"    read as: {ex['answer']!r} ({'right' if ex['correct'] else 'wrong'})")
            if h.get("refine_error"):
                print(f"  refinement failed: {h['refine_error']}")
            if h["accepted"].get("reason"):
                print(f"  decision: {h['accepted']['reason']}")
            print(f"  time: {times}")
    return 0


def cmd_runs_fork(args: argparse.Namespace) -> int:
    from gradprompt.graph.api import fork

    new_id = fork(args.run_id, args.step, args.prompt, **where(args), steps=args.steps)
    print(f"forked {args.run_id} at step {args.step} as {new_id}", file=sys.stderr)
    if args.no_run:
        print(new_id)
        return 0
    return resume_and_report(args, new_id)


def cmd_runs_rm(args: argparse.Namespace) -> int:
    from gradprompt.graph.removal import remove_runs

    out = remove_runs(args.run_ids, dry_run=args.dry_run, store_records=args.store_records, **where(args))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in out:
        kept = f" (cache rows kept: {r['cache_kept']})" if r["cache_kept"] else ""
        records = f", {r['trajectory_records']} trajectory records" if args.store_records else ""
        print(
            f"{r['run_id']}: {verb} {r['checkpoints']} checkpoints, {r['cache_rows']} rollout-cache rows{kept}"
            f"{records} and {r['folder']}"
        )
    if not args.store_records:
        print("trajectory records stay for later runs to learn from (--store-records removes them too)")
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="list, inspect and fork runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = runs_sub.add_parser("list", parents=[common], help="every run with its status and scores")
    ls.set_defaults(func=cmd_runs_list)
    show = runs_sub.add_parser("show", parents=[common], help="one run's state; --history for every step")
    show.add_argument("run_id")
    show.add_argument("--history", action="store_true", help="every step: prompt, candidates, scores, timings")
    show.add_argument(
        "--show",
        type=int,
        default=0,
        metavar="N",
        help="with --history: N pool examples of each step's current prompt (reasoning, text read, gold)",
    )
    show.set_defaults(func=cmd_runs_show)
    pend = runs_sub.add_parser("pending", parents=[common], help="runs waiting for a person's decision")
    pend.set_defaults(func=cmd_runs_pending)
    fk = runs_sub.add_parser("fork", parents=[common], help="continue a run from step K as a new run")
    fk.add_argument("run_id")
    fk.add_argument("--step", type=int, required=True, help="start from the checkpoint at the start of this step")
    fk.add_argument("--prompt", help="replace the prompt at that step with this text")
    fk.add_argument("--steps", type=int, help="new step budget for the fork")
    fk.add_argument("--no-run", action="store_true", help="only create the fork; run it later with `resume`")
    fk.set_defaults(func=cmd_runs_fork)
    rm = runs_sub.add_parser(
        "rm",
        parents=[common],
        help="remove runs: checkpoints, unshared rollout-cache rows, run folder",
        description="Remove runs: their checkpoints, the rollout-cache rows no remaining run uses, and their "
        "folder (or index entry). A run another process holds is refused. Trajectory records stay unless "
        "--store-records.",
    )
    rm.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    rm.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    rm.add_argument("--store-records", action="store_true", help="also delete the runs' trajectory records")
    rm.set_defaults(func=cmd_runs_rm)
    add_export_parser(runs_sub, common)
