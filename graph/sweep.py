"""Many optimizations at once: tasks x models x seeds as Ray tasks, resumable as a whole.

Each run of a sweep has a run id fixed by (sweep name, task, model, seed), so the same command
started again finds its runs: finished ones are skipped, unfinished ones resume from their last
checkpoint, and only missing ones start. A Ray worker that dies mid-run is retried by Ray; the
retry resumes the run from its checkpoints, whose node writes are durable, and the trajectory's
record ids are derived from (run, step, prompt), so nothing is lost or written twice.

Runs are checkpointed in the runs folder's SQLite file (one machine) or in PostgreSQL
(``checkpointer``), and all write one trajectory: a ``chroma run`` server when ``store`` is its
URL; with a store folder and more than one worker the sweep serves that folder on 127.0.0.1 itself
for its duration.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import check_run_id

STATUSES = ("done", "running", "failed", "waiting", "queued")


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    task: str
    model: str
    seed: int


@dataclass
class SweepOutcome:
    """How one run of the sweep ended. ``status``: finished, failed, or waiting (for a person's
    approval); ``earlier`` says it had finished before this sweep call and was not touched."""

    run_id: str
    task: str
    model: str
    seed: int
    status: str
    earlier: bool = False
    best_dev: float | None = None
    best_test: float | None = None
    baseline_test: float | None = None
    kept_initial: bool | None = None
    test_gain: dict | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _slug(text: str, limit: int = 40) -> str:
    base = Path(text.split(":", 1)[-1]).stem if ":" in text or "/" in text else text
    return re.sub(r"[^A-Za-z0-9]+", "-", base).strip("-")[:limit] or "x"


def plan(name: str, tasks: Iterable[str], models: Iterable[str], seeds: Iterable[int]) -> list[PlannedRun]:
    """Every (task, model, seed) once, each with its run id; duplicates in the lists are dropped."""
    check_run_id(name)
    tasks, models, seeds = (list(dict.fromkeys(x)) for x in (tasks, models, seeds))
    if not tasks:
        raise GradpromptError("a sweep needs at least one task: pass --tasks SPEC [SPEC ...] or `tasks = [...]`")
    runs, seen = [], set()
    for task in tasks:
        for model in models:
            for seed in seeds:
                run_id = check_run_id(f"{name}-{_slug(task)}-{_slug(model, 24)}-s{seed}")
                if run_id in seen:  # two specs with one slug (same file name in two folders)
                    import hashlib

                    run_id = f"{run_id}-{hashlib.sha1(f'{task}|{model}'.encode()).hexdigest()[:6]}"
                seen.add(run_id)
                runs.append(PlannedRun(run_id, task, model, int(seed)))
    return runs


def read_sweep_file(path: str | os.PathLike) -> dict[str, Any]:
    """A sweep described in TOML (or YAML): ``name``, ``tasks``, ``models``, ``seeds``, and a
    ``settings`` table of run settings shared by every run."""
    path = Path(path)
    if not path.is_file():
        raise GradpromptError(f"no sweep file {path}: pass the path of a .toml or .yaml file")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except Exception as exc:
        raise GradpromptError(f"sweep file {path} cannot be parsed ({str(exc).splitlines()[0]})") from None
    allowed = {"name", "tasks", "models", "seeds", "settings"}
    if not isinstance(data, dict) or set(data) - allowed:
        unknown = sorted(set(data) - allowed) if isinstance(data, dict) else ["(not a table)"]
        raise GradpromptError(f"sweep file {path}: unknown keys {unknown}; use {sorted(allowed)}")
    for key in ("tasks", "models", "seeds"):
        if key in data and (isinstance(data[key], str | int) or not isinstance(data[key], list)):
            data[key] = [data[key]] if isinstance(data[key], str | int) else data[key]
            if not isinstance(data[key], list):
                raise GradpromptError(f"sweep file {path}: `{key}` must be a list")
    if not isinstance(data.get("settings", {}), dict):
        raise GradpromptError(f"sweep file {path}: `settings` must be a table of run settings")
    return data


def run_one(
    run: PlannedRun, settings: dict, run_dir: str | None, checkpointer: str | None, cwd: str | None = None
) -> SweepOutcome:
    """Start, resume or just read one run; what a sweep's Ray task does (and, with one worker and
    no Ray, what the sweep does in-process)."""
    from gradprompt.graph.api import ApprovalPending, NoCheckpointYet, make_settings, resume, start_run
    from gradprompt.store.checkpoints import open_runs

    if cwd and Path(cwd).is_dir():  # relative task and store paths mean what they meant to the driver
        os.chdir(cwd)
    where = {"run_dir": run_dir, "checkpointer": checkpointer}
    outcome = SweepOutcome(run.run_id, run.task, run.model, run.seed, status="failed")
    try:
        validated = make_settings(run.task, model=run.model, seed=run.seed, **settings)
        known = open_runs(run_dir, checkpointer).raw_info(run.run_id) is not None
        try:
            result = resume(run.run_id, **where) if known else None
        except NoCheckpointYet:  # a worker died between creating the run and its first checkpoint
            result = None
        if result is None:
            result = start_run(validated, run_id=run.run_id, **where)
    except ApprovalPending as exc:
        outcome.status, outcome.error = "waiting", str(exc)
        return outcome
    except GradpromptError as exc:
        outcome.error = str(exc)
        return outcome
    outcome.status = "finished"
    outcome.best_dev, outcome.best_test = result.scores["best"]["dev"], result.scores["best"]["test"]
    outcome.baseline_test = result.scores["baseline"]["test"]
    outcome.kept_initial = result.kept_initial
    outcome.test_gain = (result.final.get("gain") or {}).get("test")
    return outcome


def finished_before(runs: list[PlannedRun], run_dir, checkpointer) -> dict[str, SweepOutcome]:
    """The planned runs already finished: read from the index and checkpoints, no model loaded."""
    from gradprompt.graph.api import list_runs

    listed = {r["run_id"]: r for r in list_runs(run_dir=run_dir, checkpointer=checkpointer)}
    out = {}
    for run in runs:
        row = listed.get(run.run_id)
        if row and row.get("status") == "finished":
            out[run.run_id] = SweepOutcome(
                run.run_id,
                run.task,
                run.model,
                run.seed,
                status="finished",
                earlier=True,
                best_dev=row.get("best_dev"),
                best_test=row.get("best_test"),
            )
    return out


Progress = Callable[[dict[str, int], str], None]  # (counts by status, what just happened)


Job = Callable[..., SweepOutcome]  # (run, settings, run_dir, checkpointer, cwd) -> outcome, like run_one


def sweep(
    tasks: Iterable[str] = (),
    models: Iterable[str] = ("smollm2",),
    seeds: Iterable[int] = (0,),
    *,
    name: str = "sweep",
    runs: list[PlannedRun] | None = None,
    job: Job = run_one,
    skip_finished: bool = True,
    workers: int = 1,
    ray_address: str | None = None,
    gpus_per_run: float = 0,
    cpus_per_run: float | None = None,
    retries: int = 3,
    run_dir=None,
    checkpointer: str | None = None,
    store: str | None = None,
    use_ray: bool = True,
    on_progress: Progress | None = None,
    **settings: Any,
) -> list[SweepOutcome]:
    """Run every (task, model, seed) optimization with ``settings``, ``workers`` at a time, as Ray
    tasks (``ray.init()`` on this machine, or the cluster at ``ray_address``). Started again with
    the same name, it skips finished runs and resumes unfinished ones. ``runs`` replaces the
    product of tasks, models and seeds by an explicit list; ``job`` replaces :func:`run_one` (it
    must resume a run the same way, e.g. call it first) for callers that do more per run."""
    from gradprompt.store.checkpoints import checkpointer_url, runs_dir
    from gradprompt.store.chroma_client import default_location, is_server

    if workers < 1:
        raise GradpromptError(f"--workers must be at least 1 (got {workers})")
    if gpus_per_run < 0 or (cpus_per_run is not None and cpus_per_run <= 0):
        raise GradpromptError("--gpus-per-run must be >= 0 and --cpus-per-run > 0")
    if retries < 0:
        raise GradpromptError(f"--retries must be 0 or more (got {retries}): times a dead worker's run restarts")
    planned = runs if runs is not None else plan(name, tasks, models, seeds)
    checkpointer = checkpointer_url(checkpointer)
    run_dir = str(runs_dir(run_dir).resolve())
    from gradprompt.graph.api import make_settings
    from gradprompt.nodes.runtime.model_loading import check_model
    from gradprompt.nodes.session import load_inputs

    for run in planned:  # every run's settings, data and model are valid before anything starts
        load_inputs(make_settings(run.task, model=run.model, seed=run.seed, **settings))
        check_model(run.model)
    outcomes = finished_before(planned, run_dir, checkpointer) if skip_finished else {}
    todo = [r for r in planned if r.run_id not in outcomes]
    counts = {"done": len(outcomes), "running": 0, "failed": 0, "waiting": 0, "queued": len(todo)}

    def tell(event: str) -> None:
        if on_progress is not None:
            on_progress(dict(counts), event)

    tell(f"{len(planned)} runs planned, {len(outcomes)} finished earlier")
    if not todo:
        return [outcomes[r.run_id] for r in planned]
    with ExitStack() as stack:
        location = store or default_location()
        shared = settings.get("trajectory", True) and not is_server(location)
        if shared and (workers > 1 or ray_address):
            from gradprompt.store.chroma_server import serving

            location = stack.enter_context(serving(str(Path(location).resolve())))
            tell(f"trajectory folder served at {location} for the sweep")
        elif shared:
            location = str(Path(location).resolve())
        run_settings = {**settings, "store": location}
        shared_args = (run_settings, run_dir, checkpointer, os.getcwd())
        if use_ray:
            ray_options = {"address": ray_address, "gpus": gpus_per_run, "cpus": cpus_per_run, "retries": retries}
            finished = _on_ray(job, todo, shared_args, workers, ray_options, counts, tell)
        else:
            finished = {}
            for run in todo:
                _start(run, counts, tell)
                finished[run.run_id] = _count(job(run, *shared_args), counts, tell)
        outcomes.update(finished)
    return [outcomes[r.run_id] for r in planned]


def _start(run: PlannedRun, counts: dict[str, int], tell) -> None:
    counts["queued"] -= 1
    counts["running"] += 1
    tell(f"{run.run_id} started")


def _count(outcome: SweepOutcome, counts: dict[str, int], tell) -> SweepOutcome:
    counts["running"] -= 1
    key = {"finished": "done"}.get(outcome.status, outcome.status)
    counts[key] += 1
    tell(f"{outcome.run_id} {outcome.status}" + (f": {outcome.error}" if outcome.error else ""))
    return outcome


def _on_ray(
    job: Job, todo: list[PlannedRun], shared_args: tuple, workers: int, options: dict, counts: dict[str, int], tell
) -> dict[str, SweepOutcome]:
    """Submit the runs as Ray tasks, at most ``workers`` at a time, and collect them as they end.
    ``options``: the cluster ``address`` (None: start Ray here), ``gpus`` and ``cpus`` per run, and
    how many ``retries`` a run gets when its worker dies."""
    ray_address, cpus_per_run = options["address"], options["cpus"]
    if not ray_address:  # Ray's own switch for a one-machine cluster: its servers listen on 127.0.0.1 only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if cpus_per_run is None:
        cpus_per_run = 1 if ray_address else max(1, (os.cpu_count() or 1) // workers)
    started_here = not ray.is_initialized()
    if started_here:
        env = {k: v for k, v in os.environ.items() if k.startswith(("GRADPROMPT_", "HF_", "TRANSFORMERS_"))}
        env.setdefault("ANONYMIZED_TELEMETRY", "False")
        init: dict[str, Any] = {
            "runtime_env": {"env_vars": env},
            "log_to_driver": False,  # the runs' own output stays in Ray's logs; the sweep reports their ends
            "logging_level": logging.ERROR,
        }
        if ray_address:
            init["address"] = ray_address
        else:
            init.update(num_cpus=max(workers * cpus_per_run, os.cpu_count() or 1), include_dashboard=False)
        try:
            ray.init(**init)
        except Exception as exc:
            where = ray_address or "this machine"
            raise GradpromptError(
                f"could not start or reach Ray on {where} ({str(exc).splitlines()[0][:200]}): check --ray-address"
            ) from None
    try:
        placement = {"num_cpus": cpus_per_run, "num_gpus": options["gpus"]}
        task = ray.remote(**placement, max_retries=options["retries"], retry_exceptions=False)(_as_function(job))
        pending: dict = {}
        queue = list(todo)
        done: dict[str, SweepOutcome] = {}
        while queue or pending:
            while queue and len(pending) < workers:
                run = queue.pop(0)
                pending[task.remote(run, *shared_args)] = run
                _start(run, counts, tell)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker died more often than the retries allow
                    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                    outcome = SweepOutcome(run.run_id, run.task, run.model, run.seed, "failed", error=first)
                done[run.run_id] = _count(outcome, counts, tell)
        return done
    finally:
        if started_here:
            ray.shutdown()


def _as_function(job: Callable[..., SweepOutcome]) -> Callable[..., SweepOutcome]:
    """Ray turns only plain functions into tasks; a ``functools.partial`` (a job with its context
    bound) is wrapped in one."""
    if inspect.isfunction(job):
        return job

    def bound_job(*args: Any) -> SweepOutcome:
        return job(*args)

    return bound_job


def summary_lines(outcomes: list[SweepOutcome]) -> list[str]:
    """A plain table of the sweep's runs and how each ended."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [f"{'run':48} {'status':9} {'dev':>6} {'test':>6}  note"]
    for o in outcomes:
        note = "finished earlier" if o.earlier else (o.error or "")
        gain = o.test_gain
        if gain and not o.earlier:
            note = f"test gain {gain['gain']:+.3f} [{gain['ci95'][0]:+.2f}, {gain['ci95'][1]:+.2f}]" + (
                ", kept initial" if o.kept_initial else ""
            )
        lines.append(f"{o.run_id:48} {o.status:9} {pct(o.best_dev):>6} {pct(o.best_test):>6}  {note[:120]}")
    return lines
