"""``gradprompt``: optimize, resume, inspect, fork and evaluate from the command line.

Every run is checkpointed after each node; Ctrl-C stops at the next node boundary and prints the
command that continues the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
import typing
from typing import Any

from graph.summary import summary_lines
from nodes.errors import GradpromptError
from nodes.settings import RunSettings

# Settings that are not command-line flags of `optimize` (the task is its own flag).
_NOT_FLAGS = {"task"}
_SHORT_HELP = {
    "steps": "optimization steps (default 20)",
}


def _field_type(annotation) -> tuple[type | None, list[str] | None]:
    """The argparse type (and choices) of a pydantic field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str, list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_type(args[0])
    if annotation in (int, float, str, bool):
        return annotation, None
    return str, None


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search settings (defaults suit a CPU)")
    for name, info in RunSettings.model_fields.items():
        if name in _NOT_FLAGS:
            continue
        kind, choices = _field_type(info.annotation)
        default = info.default
        text = info.description or name
        if kind is bool:
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} (default {'on' if default else 'off'})",
            )
            continue
        if default is not None and not isinstance(default, type(...)):
            text += f" (default {default})"
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            choices=choices,
            default=None,
            help=text,
            metavar=None if choices else name.split("_")[-1].upper(),
        )


def _settings_from(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name)
        for name in RunSettings.model_fields
        if name not in _NOT_FLAGS and getattr(args, name, None) is not None
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_result(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    s = result.scores
    print()
    print(
        f"run {result.run_id}: {result.steps} steps ({result.stop_reason}), {result.variant} variant, "
        f"model {result.model}"
    )
    lines = summary_lines(result.final)
    if not lines:  # a run without a final choice (it never finished)
        lines = [f"initial dev {_fmt(s['baseline']['dev'])}  final dev {_fmt(s['best']['dev'])}"]
    for line in lines:
        print(line)
    print(f"({result.dev_examples} dev and {result.test_examples} test examples)")


def _progress(args: argparse.Namespace):
    """A progress display fed by node updates: a bar on a terminal, plain lines in logs and pipes,
    nothing under --json."""
    from graph.progress import PlainProgress, RunProgress
    from nodes.runtime.progress_bars import shown

    if getattr(args, "json", False):
        return None
    return RunProgress() if shown() else PlainProgress()


def _approver(args: argparse.Namespace):
    """Ask at the terminal when there is one; otherwise runs wait for `gradprompt approve`."""
    if getattr(args, "json", False) or not sys.stdin.isatty():
        return None
    from graph.approval import terminal_approver

    return terminal_approver()


def _where(args: argparse.Namespace) -> dict[str, Any]:
    """Where the runs live: the runs folder, or the checkpoint database when one is named."""
    return {"run_dir": args.run_dir, "checkpointer": args.checkpointer}


def cmd_optimize(args: argparse.Namespace) -> int:
    from graph.api import make_settings, start_run

    if args.approve:
        args.human_approval = True
    settings = make_settings(args.task, **_settings_from(args))
    progress = _progress(args)
    with progress or _Null():
        result = start_run(
            settings,
            **_where(args),
            run_id=args.run_id,
            on_update=progress.update if progress else None,
            on_start=None
            if args.json
            else (lambda rid: print(f"run {rid} (resume with `gradprompt resume {rid}`)", file=sys.stderr)),
        )
    _print_result(result, args.json)
    return 0


def _resume_and_report(args: argparse.Namespace, run_id: str) -> int:
    from graph.api import resume

    progress = _progress(args)
    with progress or _Null():
        result = resume(
            run_id, **_where(args), on_update=progress.update if progress else None, approver=_approver(args)
        )
    _print_result(result, args.json)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    return _resume_and_report(args, args.run_id)


def cmd_runs_pending(args: argparse.Namespace) -> int:
    from graph.api import pending_runs
    from graph.approval import render_request

    runs = pending_runs(**_where(args))
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


def cmd_approve(args: argparse.Namespace) -> int:
    from graph.api import approve

    answer = approve(args.run_id, args.action, args.prompt, **_where(args))
    if args.json:
        print(json.dumps(answer))
    else:
        print(
            f"{args.action} recorded for step {answer['step']} of {args.run_id}; continue with "
            f"`gradprompt resume {args.run_id}`"
        )
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from graph.api import list_runs

    runs = list_runs(**_where(args))
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print("no runs yet: start one with `gradprompt optimize --task builtin:compare`")
        return 0
    print(f"{'run id':44s} {'status':9s} {'steps':>7s} {'best dev':>8s} {'test':>6s}  task")
    for r in runs:
        if r["status"] == "damaged":
            print(f"{r['run_id']:44s} damaged   {r['problem']}")
            continue
        print(
            f"{r['run_id']:44s} {r['status']:9s} {r['steps']:>3d}/{r['of_steps']:<3d} {_fmt(r['best_dev']):>8s} "
            f"{_fmt(r['best_test']):>6s}  {r['task']}"
        )
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from graph.api import run_values

    values = run_values(args.run_id, **_where(args))
    history = values.get("history", [])
    if args.json:
        keep = {k: v for k, v in values.items() if k not in ("reasonings",)}
        if not args.history:
            keep.pop("history", None)
        print(json.dumps(keep, indent=2, default=str))
        return 0
    s = values.get("settings", {})
    print(f"run {args.run_id}: task {s.get('task')}, model {s.get('model')}, {s.get('variant')} variant")
    print(
        f"steps finished: {values.get('step', 0)} of {s.get('steps')}"
        + (f" ({values['stop_reason']})" if values.get("stop_reason") else "")
        + (f"; next node: {', '.join(values['next'])}" if values.get("next") else "; finished")
    )
    print(f"current prompt: {values.get('prompt_text')!r}")
    final = values.get("final") or {}
    for line in summary_lines(final):
        print(line)
    if args.history:
        for h in history:
            print()
            changed = "changed" if h["changed"] else "kept"
            times = ", ".join(f"{k} {v:.1f}s" for k, v in h.get("timings", {}).items())
            print(f"step {h['step']} position {h['position']} ({changed}): {h['prompt_text']!r}")
            cur = h["current"]
            print(
                f"  current   acc {_fmt(cur.get('accuracy'))} on {cur.get('examples', '-')} "
                f"gold lp {_fmt(cur.get('gold_logprob'))}"
            )
            for c in h["candidates"]:
                mark = "*" if c["prompt"] == h["accepted"]["prompt"] else " "
                how_far = c.get("stopped") or "ran the whole pool"
                print(
                    f" {mark}{c['source']:9s} acc {_fmt(c.get('accuracy'))} on {c.get('examples', '-')} "
                    f"gold lp {_fmt(c.get('gold_logprob'))} grad {_fmt(c.get('gradient'))}  {c['text']!r}  "
                    f"[{how_far}]"
                )
            dropped = {k: v for k, v in (h.get("rejected") or {}).items() if v}
            if dropped:
                words = {
                    "held_before": "held before by this run (not raced: no cycles)",
                    "over_limit": "over the edit limit",
                }
                print("  not raced: " + ", ".join(f"{v} {words.get(k, k)}" for k, v in dropped.items()))
            if h["accepted"].get("reason"):
                print(f"  decision: {h['accepted']['reason']}")
            print(f"  time: {times}")
    return 0


def cmd_runs_fork(args: argparse.Namespace) -> int:
    from graph.api import fork

    new_id = fork(args.run_id, args.step, args.prompt, **_where(args), steps=args.steps)
    print(f"forked {args.run_id} at step {args.step} as {new_id}", file=sys.stderr)
    if args.no_run:
        print(new_id)
        return 0
    return _resume_and_report(args, new_id)


def cmd_sweep(args: argparse.Namespace) -> int:
    from graph.sweep import read_sweep_file, summary_lines, sweep

    spec = read_sweep_file(args.file) if args.file else {}
    settings = {**spec.get("settings", {}), **_settings_from(args)}
    for key in ("model", "seed", "task"):
        if key in settings:
            raise GradpromptError(f"a sweep takes `{key}s` (a list), not `{key}`: e.g. --{key}s A B")
    models = args.models or spec.get("models") or ["smollm2"]
    seeds = args.seeds if args.seeds is not None else spec.get("seeds", [0])

    def tell(counts: dict[str, int], event: str) -> None:
        if not args.json:
            state = ", ".join(f"{counts[k]} {k}" for k in ("done", "running", "failed", "waiting", "queued"))
            print(f"sweep: {state} | {event}", file=sys.stderr, flush=True)

    outcomes = sweep(
        args.tasks or spec.get("tasks") or [],
        models,
        seeds,
        name=args.name or spec.get("name") or "sweep",
        workers=args.workers,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        retries=args.retries,
        use_ray=not args.no_ray,
        store=args.store,
        on_progress=tell,
        **_where(args),
        **{k: v for k, v in settings.items() if k != "store"},
    )
    if args.json:
        print(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        print("\n".join(summary_lines(outcomes)))
    failed = [o for o in outcomes if o.status == "failed"]
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from graph.api import evaluate_prompt

    out = evaluate_prompt(
        args.task,
        args.prompt,
        model=args.model or "smollm2",
        split=args.split,
        **{k: v for k, v in _settings_from(args).items() if k != "model"},
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        low, high = out["ci95"]
        how = "answers chosen from the allowed set" if out["readout"] == "choice" else "answers parsed from the text"
        after = f"after up to {out['max_new_tokens']} reasoning tokens" if out["max_new_tokens"] else "directly"
        print(
            f"{out['split']} accuracy {out['accuracy']:.3f} [95% CI {low:.2f}, {high:.2f}] on {out['examples']} "
            f"examples (prompt NLL {out['prompt_nll']:.2f}; {how}, {after}): {out['prompt']!r}"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from graph.api import report

    path = report(args.run_id, out=args.out, fmt=args.format, score_dev=args.score_dev, **_where(args))
    print(json.dumps({"report": str(path)}) if args.json else f"report written to {path}")
    return 0


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days (e.g. 30 or 0.5)")
    return days


def cmd_store(args: argparse.Namespace) -> int:
    from store.trajectory import TrajectoryStore

    store = TrajectoryStore(args.store)
    if args.store_command == "stats":
        out = store.stats()
    elif args.store_command == "search":
        hits = store.similar(args.text, model=args.model, k=args.k, task=args.task)
        out = [{**h.record.to_json(), "similarity": round(h.similarity, 4)} for h in hits]
    elif args.store_command == "show":
        out = [r.to_json() for r in sorted(store.records(run_id=args.run_id), key=lambda r: (r.step, r.source))]
        if not out:
            raise GradpromptError(f"the store at {store.location} has no records of run {args.run_id!r}")
    elif args.store_command == "prune":
        before = None if args.older_than is None else time.time() - 86400 * args.older_than
        out = store.prune(before=before, task=args.task, model=args.model, run_id=args.run, dry_run=args.dry_run)
    else:
        n = store.export(args.file)
        out = {"exported": n, "file": args.file}
    if args.json or args.store_command == "export":
        print(json.dumps(out, indent=2))
    elif args.store_command == "stats":
        size = "size unknown (a server)" if out["size_on_disk"] is None else f"{out['size_on_disk'] / 2**20:.1f} MiB"
        print(
            f"{out['records']} records ({out['distinct_prompts']} distinct prompts) from {out['runs']} runs "
            f"in {out['location']}, {size} on disk"
        )
        dated = [f"recorded {out['oldest']} to {out['newest']}"] if out["oldest"] else []
        if dated or out["undated"]:
            print("  " + ", ".join(dated + [f"{out['undated']} undated"] * bool(out["undated"])))
        for key in ("tasks", "models", "sources", "versions"):
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in out[key].items()))
    elif args.store_command == "prune":
        verb = "would delete" if out["dry_run"] else "deleted"
        per_task = ", ".join(f"{k} {v}" for k, v in out["tasks"].items())
        print(f"{verb} {out['matched']} records" + (f" ({per_task})" if per_task else ""))
    else:
        for r in out:
            sim = f"sim {r['similarity']:.3f} " if "similarity" in r else ""
            value = r.get("accuracy") if r.get("accuracy") is not None else r.get("dev_accuracy")
            acc = "-" if value is None else f"{value:.2f}"
            mark = "*" if r.get("accepted") else " "
            print(f"{mark}{sim}step {r['step']:>3} {r['source']:10s} acc {acc:>4s} {r['task']}: {r['text']!r}")
    return 0


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradprompt",
        description="Find the instruction that makes your local model answer better: gradients over its own "
        "reasoning (GReaTer) in a checkpointed LangGraph run.",
        epilog="Start with: gradprompt optimize --task builtin:compare --steps 4",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", help="folder of runs and their checkpoints (default $GRADPROMPT_HOME/runs)")
    common.add_argument(
        "--checkpointer",
        default=None,
        help="postgresql://USER@HOST:PORT/DB: keep checkpoints and the run index in PostgreSQL so every machine "
        "sees every run (default $GRADPROMPT_CHECKPOINTER, else the SQLite file in --run-dir)",
    )
    common.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    opt = sub.add_parser(
        "optimize",
        parents=[common],
        help="optimize a prompt for a task",
        description="Optimize a prompt for a task and report baseline vs optimized accuracy.",
    )
    opt.add_argument(
        "--task",
        required=True,
        help="builtin:NAME (arithmetic, compare, category), bbh:FILE.json, gsm8k:FILE_OR_DIR, "
        "folio:FILE_OR_DIR, jsonl:FILE or csv:FILE",
    )
    opt.add_argument("--run-id", help="name the run (default: task name + time)")
    opt.add_argument(
        "--approve",
        action="store_true",
        help="a person approves, rejects or edits every update (asked at the terminal; without one "
        "the run waits for `gradprompt approve`)",
    )
    _add_settings_flags(opt)
    opt.set_defaults(func=cmd_optimize)

    res = sub.add_parser("resume", parents=[common], help="continue a stopped or killed run")
    res.add_argument("run_id")
    res.set_defaults(func=cmd_resume)

    runs = sub.add_parser("runs", help="list, inspect and fork runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = runs_sub.add_parser("list", parents=[common], help="every run with its status and scores")
    ls.set_defaults(func=cmd_runs_list)
    show = runs_sub.add_parser("show", parents=[common], help="one run's state; --history for every step")
    show.add_argument("run_id")
    show.add_argument("--history", action="store_true", help="every step: prompt, candidates, scores, timings")
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

    ap = sub.add_parser("approve", parents=[common], help="answer a run waiting for approval (then `resume`)")
    ap.add_argument("run_id")
    ap.add_argument("--action", required=True, choices=["approve", "reject", "edit"])
    ap.add_argument("--prompt", help="the prompt to use instead, with --action edit")
    ap.set_defaults(func=cmd_approve)

    st = sub.add_parser("store", help="look into the trajectory store shared by runs")
    st_sub = st.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_common = argparse.ArgumentParser(add_help=False, parents=[common])
    store_common.add_argument("--store", help="store folder or http://HOST:PORT (default $GRADPROMPT_HOME/trajectory)")
    st_sub.add_parser(
        "stats", parents=[store_common], help="size on disk, dates, records per task, model, source and version"
    )
    search = st_sub.add_parser("search", parents=[store_common], help="prompts most similar to TEXT")
    search.add_argument("text")
    search.add_argument("--model", default="smollm2", help="only prompts recorded for this model")
    search.add_argument("--task", help="only prompts of this task (its name, e.g. navigate)")
    search.add_argument("-k", type=int, default=10, help="how many")
    show_store = st_sub.add_parser("show", parents=[store_common], help="every record of one run")
    show_store.add_argument("run_id")
    prune = st_sub.add_parser(
        "prune", parents=[store_common], help="delete records by age, task, model or run (all given must match)"
    )
    prune.add_argument("--older-than", type=_positive_days, metavar="DAYS", help="recorded more than DAYS days ago")
    prune.add_argument("--task", help="of this task (its name, e.g. navigate)")
    prune.add_argument("--model", help="recorded for this model")
    prune.add_argument("--run", help="written by this run id")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    export = st_sub.add_parser("export", parents=[store_common], help="write every record to a JSONL file")
    export.add_argument("file")
    st.set_defaults(func=cmd_store)

    rep = sub.add_parser(
        "report", parents=[common], help="write a run's report: scores, prompt diffs, sources, timings"
    )
    rep.add_argument("run_id")
    rep.add_argument("--out", help="folder for the report (default: the run's folder)")
    rep.add_argument("--format", choices=["html", "md"], default="html", help="one HTML file, or Markdown + PNGs")
    rep.add_argument("--score-dev", action="store_true", help="also score every step's prompt on dev (loads the model)")
    rep.set_defaults(func=cmd_report)

    sw = sub.add_parser(
        "sweep",
        parents=[common],
        help="many runs (tasks x models x seeds) as Ray tasks; started again, it resumes",
        description="Run tasks x models x seeds optimizations as Ray tasks, WORKERS at a time. Started again "
        "with the same name it skips finished runs and resumes unfinished ones.",
    )
    sw.add_argument("file", nargs="?", help="a .toml or .yaml file with name, tasks, models, seeds, [settings]")
    sw.add_argument("--name", help="the sweep's name: its runs are NAME-TASK-MODEL-sSEED (default sweep)")
    sw.add_argument("--tasks", nargs="+", help="task specs, as for optimize --task")
    sw.add_argument("--models", nargs="+", help="models (default smollm2)")
    sw.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0)")
    sw.add_argument("--workers", type=int, default=1, help="runs at a time (default 1)")
    sw.add_argument("--ray-address", help="a Ray cluster (e.g. 10.0.0.5:6379); default: a local Ray on this machine")
    sw.add_argument("--gpus-per-run", type=float, default=0, help="GPUs Ray reserves for each run (default 0)")
    sw.add_argument("--cpus-per-run", type=float, help="CPUs Ray reserves for each run (default: cores / workers)")
    sw.add_argument(
        "--retries",
        type=int,
        default=3,
        help="times a run whose worker died is started again, from its last checkpoint (default 3)",
    )
    sw.add_argument("--no-ray", action="store_true", help="run one after another in this process, without Ray")
    sw.set_defaults(func=cmd_sweep)
    _add_settings_flags(sw)

    ev = sub.add_parser("evaluate", parents=[common], help="score a prompt the way runs do")
    ev.add_argument("--task", required=True, help="task spec, as for optimize")
    ev.add_argument("--prompt", required=True, help="the prompt text")
    ev.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    _add_settings_flags(ev)
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    # Third-party bars and warnings have no place in our output; progress is ours (see _progress).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from nodes.runtime.progress_bars import quiet

    try:
        with quiet(getattr(args, "json", False)):
            code = args.func(args)
    except GradpromptError as exc:
        print(f"gradprompt: {exc}", file=sys.stderr)
        code = {"RunStopped": 130, "ApprovalPending": 3}.get(type(exc).__name__, 2)
    except KeyboardInterrupt:
        print("gradprompt: interrupted; `gradprompt runs list` shows the run to resume", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader went away (`gradprompt runs show ID | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    raise SystemExit(code)


if __name__ == "__main__":
    main()
