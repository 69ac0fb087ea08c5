"""``gradprompt sweep``: tasks x models x seeds as Ray tasks, resumable by name."""

from __future__ import annotations

import argparse
import json
import sys

from gradprompt.errors import GradpromptError
from gradprompt.graph.commands.common import where
from gradprompt.graph.commands.flags import SWEEP_FIELDS, add_settings_flags, settings_from


def cmd_sweep(args: argparse.Namespace) -> int:
    from gradprompt.graph.sweep import read_sweep_file, summary_lines, sweep

    spec = read_sweep_file(args.file) if args.file else {}
    settings = {**spec.get("settings", {}), **settings_from(args)}
    for key in ("model", "seed", "task"):
        if key in settings or getattr(args, f"single_{key}", None) is not None:
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
        **where(args),
        **{k: v for k, v in settings.items() if k != "store"},
    )
    if args.json:
        print(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        print("\n".join(summary_lines(outcomes)))
    failed = [o for o in outcomes if o.status == "failed"]
    return 1 if failed else 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    sw = sub.add_parser(
        "sweep",
        parents=[common],
        help="many runs (tasks x models x seeds) as Ray tasks; started again, it resumes",
        usage="%(prog)s [FILE] [--tasks TASK ...] [--models MODEL ...] [--seeds SEED ...] [options]",
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
    for key in ("model", "seed", "task"):  # not offered, but answered: a sweep takes lists of these
        sw.add_argument(f"--{key}", dest=f"single_{key}", help=argparse.SUPPRESS)
    sw.set_defaults(func=cmd_sweep)
    add_settings_flags(sw, SWEEP_FIELDS)
