"""The Python API: start, resume, fork and inspect runs, and score a prompt the way runs do.

Every run is a LangGraph thread (thread id = run id) checkpointed after every node with durable
writes (to the runs folder's SQLite file, or to PostgreSQL with ``checkpointer="postgresql://..."``
or ``GRADPROMPT_CHECKPOINTER``), so a run stopped by Ctrl-C, a crash or SIGKILL continues from its last finished
node with ``resume(run_id)`` and nothing counted twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langgraph.types import Command
from pydantic import ValidationError

from graph.builder import FIRST_STEP_NODE, LAST_STEP_NODE
from graph.context import Context
from nodes.errors import GradpromptError
from nodes.greater import rollout
from nodes.runtime.model_loading import check_model
from nodes.session import load_inputs, session
from nodes.settings import RunSettings
from nodes.tasks.confidence import wilson_interval
from store.checkpoints import new_run_id, open_runs
from store.locks import check_run_id

Update = Callable[[str, dict, dict], None]  # (node name, what it wrote, settings)


class RunStopped(GradpromptError):
    """The run was stopped on request (Ctrl-C) at a node boundary; it can be resumed."""

    def __init__(self, run_id: str):
        super().__init__(
            f"run {run_id} stopped after its last finished node; continue it with `gradprompt resume {run_id}`"
        )
        self.run_id = run_id


class NoCheckpointYet(GradpromptError):
    """The run is in the index but its process died before the first checkpoint."""


@dataclass(frozen=True)
class OptimizationResult:
    """What a finished run produced. ``scores`` holds dev and test accuracy of the initial
    (baseline) prompt and of the chosen prompt; ``variant`` says which method made it."""

    run_id: str
    task: str
    model: str
    variant: str
    baseline_prompt: str
    best_prompt: str
    best_prompt_ids: list[int]
    scores: dict[str, dict[str, float | None]]
    steps: int
    stop_reason: str
    history: list[dict] = field(repr=False)
    dev_examples: int = 0
    test_examples: int = 0
    # the final choice: kept_initial, reason, gain (dev/test paired differences with 95% intervals
    # and p-values), empty_prompt and majority_answer test rates, each accuracy with its interval
    final: dict = field(default_factory=dict, repr=False)

    @property
    def kept_initial(self) -> bool:
        return bool(self.final.get("kept_initial", True))

    @property
    def reason(self) -> str:
        return str(self.final.get("reason", ""))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_settings(task: str, **overrides: Any) -> RunSettings:
    """Validated settings; a wrong value is one clear error naming the setting."""
    try:
        return RunSettings(task=task, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise GradpromptError(f"invalid settings ({problems})") from None


@contextmanager
def _in_use(runs, run_id: str, doing: str, settings: dict | None = None) -> Iterator[None]:
    """Hold the run (and, for a run that writes its trajectory to a store folder, that folder) for
    the block, so a second process that drives, answers or forks it is refused, not interleaved."""
    with ExitStack() as stack:
        stack.enter_context(runs.lock(run_id, doing))
        if settings and settings.get("trajectory", True):
            from store.trajectory import holding

            stack.enter_context(holding(settings.get("store")))
        yield


def _config(run_id: str) -> dict:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": 1_000_000}


class _StopRequest:
    """First Ctrl-C asks the run to stop at the next node boundary; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


Approver = Callable[[dict], dict]  # approval request -> {"action": ..., "prompt": ...}


class ApprovalPending(GradpromptError):
    """The run waits for a person's decision on an update; answer it and resume."""

    def __init__(self, run_id: str, request: dict):
        super().__init__(
            f"run {run_id} waits for approval of step {request.get('step')}: answer with "
            f"`gradprompt approve {run_id} --action approve|reject|edit [--prompt TEXT]`, "
            f"then `gradprompt resume {run_id}`"
        )
        self.run_id = run_id
        self.request = request


def pending_request(snapshot) -> dict | None:
    """The approval request a checkpointed run waits on, if any."""
    for item in getattr(snapshot, "interrupts", ()) or ():
        return item.value
    return None


def _drive(
    graph, run_id: str, graph_input, on_update: Update | None, chat_model=None, approver: Approver | None = None
) -> dict:
    """Run the graph to the end, checkpointing every node durably. A stop request ends it at the
    next node boundary; an approval request goes to ``approver`` or, without one, ends the call
    with :class:`ApprovalPending` (the run stays resumable)."""
    with _StopRequest() as stop:
        settings: dict = {}
        while True:
            stream = graph.stream(
                graph_input,
                _config(run_id),
                stream_mode="updates",
                durability="sync",
                context=Context(chat_model=chat_model),
            )
            for chunk in stream:
                for node, update in chunk.items():
                    if not isinstance(update, dict):
                        continue
                    settings = settings or graph.get_state(_config(run_id)).values.get("settings", {})
                    if on_update is not None:
                        on_update(node, update, settings)
                if stop.requested:
                    raise RunStopped(run_id)
            snapshot = graph.get_state(_config(run_id))
            request = pending_request(snapshot)
            if request is None:
                return snapshot.values
            if approver is None:
                raise ApprovalPending(run_id, request)
            graph_input = Command(resume=approver(request))


def _result(values: dict) -> OptimizationResult:
    final = values.get("final") or {}
    settings = values["settings"]
    baseline, best = final.get("baseline", {}), final.get("best", {})
    return OptimizationResult(
        run_id=values["run_id"],
        task=settings["task"],
        model=settings["model"],
        variant=settings["variant"],
        baseline_prompt=values["baseline"]["text"],
        best_prompt=best.get("text", values.get("prompt_text", "")),
        best_prompt_ids=best.get("prompt", values.get("prompt", [])),
        scores={
            "baseline": {"dev": baseline.get("dev_accuracy"), "test": baseline.get("test_accuracy")},
            "best": {"dev": best.get("dev_accuracy"), "test": best.get("test_accuracy")},
        },
        steps=values.get("step", 0),
        stop_reason=values.get("stop_reason", ""),
        history=values.get("history", []),
        dev_examples=final.get("dev_examples", 0),
        test_examples=final.get("test_examples", 0),
        final=final,
    )


def start_run(
    settings: RunSettings,
    *,
    run_dir=None,
    checkpointer: str | None = None,
    run_id: str | None = None,
    on_update: Update | None = None,
    on_start: Callable[[str], None] | None = None,
    chat_model=None,
    approver: Approver | None = None,
) -> OptimizationResult:
    """Start a run with validated settings (see :func:`optimize` for the friendly form)."""
    task, _ = load_inputs(settings)  # bad data fails here, before a model is loaded
    check_model(settings.model)
    runs = open_runs(run_dir, checkpointer)
    run_id = check_run_id(run_id) if run_id else new_run_id(task.name)
    with _in_use(runs, run_id, "optimize", settings.model_dump()), runs.graph() as graph:
        if graph.get_state(_config(run_id)).values:
            raise GradpromptError(f"run {run_id} already exists: resume it, or choose another --run-id")
        runs.write_info(
            run_id,
            {
                "run_id": run_id,
                "settings": settings.model_dump(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "parent": None,
            },
        )
        if on_start:
            on_start(run_id)
        values = _drive(
            graph, run_id, {"run_id": run_id, "settings": settings.model_dump()}, on_update, chat_model, approver
        )
    return _result(values)


def optimize(
    task: str,
    model: str = "smollm2",
    *,
    run_dir=None,
    checkpointer: str | None = None,
    run_id: str | None = None,
    on_update: Update | None = None,
    chat_model=None,
    approver: Approver | None = None,
    **settings: Any,
) -> OptimizationResult:
    """Optimize a prompt for ``task`` (a spec such as ``builtin:compare`` or ``bbh:path/navigate.json``)
    on ``model``. Keyword settings are those of :class:`nodes.settings.RunSettings` (``steps``,
    ``train``, ``dev``, ``test``, ``seed``, ``max_new_tokens``, ``variant``, ``store``,
    ``warm_start`` ...). ``chat_model`` is any LangChain chat model for the refinement step; by
    default the run's own local model writes the refined prompts. With ``human_approval=True``
    every update waits for a person: ``approver(request)`` answers in-process, or, without one,
    :class:`ApprovalPending` is raised and the run waits for :func:`approve` + :func:`resume`."""
    return start_run(
        make_settings(task, model=model, **settings),
        run_dir=run_dir,
        checkpointer=checkpointer,
        run_id=run_id,
        on_update=on_update,
        chat_model=chat_model,
        approver=approver,
    )


def resume(
    run_id: str,
    *,
    run_dir=None,
    checkpointer: str | None = None,
    on_update: Update | None = None,
    chat_model=None,
    approver: Approver | None = None,
) -> OptimizationResult:
    """Continue a stopped or killed run from its last checkpoint; a finished run is returned as is.
    A run waiting for approval continues with the answer given by :func:`approve` (or ``approver``)."""
    runs = open_runs(run_dir, checkpointer)
    info = runs.read_info(run_id)
    with _in_use(runs, run_id, "resume", info.get("settings")), runs.graph() as graph:
        snapshot = graph.get_state(_config(run_id))
        if not snapshot.values:
            raise NoCheckpointYet(f"run {run_id} has no checkpoint yet: start it again with `gradprompt optimize`")
        if not snapshot.next:
            return _result(snapshot.values)
        graph_input, answer = None, None
        request = pending_request(snapshot)
        if request is not None:
            answer = runs.read_decision(run_id)
            if answer is None and approver is None:
                raise ApprovalPending(run_id, request)
            graph_input = Command(resume=answer if answer is not None else approver(request))
        try:
            values = _drive(graph, run_id, graph_input, on_update, chat_model, approver)
        finally:
            if answer is not None:  # forget the answer once the step it was for has moved on
                now = pending_request(graph.get_state(_config(run_id)))
                if now is None or now.get("step") != answer.get("step"):
                    runs.clear_decision(run_id)
    return _result(values)


def approve(run_id: str, action: str, prompt: str | None = None, *, run_dir=None, checkpointer=None) -> dict:
    """Answer the approval a run waits on, without a terminal session; ``resume`` applies it."""
    from nodes.approve import parse_answer

    parse_answer({"action": action, "prompt": prompt})
    runs = open_runs(run_dir, checkpointer)
    runs.read_info(run_id)
    with runs.lock(run_id, "approve"):
        with runs.graph() as graph:
            request = pending_request(graph.get_state(_config(run_id)))
        if request is None:
            raise GradpromptError(f"run {run_id} is not waiting for an approval (see `gradprompt runs pending`)")
        answer = {"action": action, "prompt": prompt, "step": request["step"]}
        runs.write_decision(run_id, answer)
    return answer


def pending_runs(*, run_dir=None, checkpointer=None) -> list[dict]:
    """Runs waiting for a person's decision, with what they wait on."""
    out = []
    runs = open_runs(run_dir, checkpointer)
    with runs.graph() as graph:
        for run_id in runs.list_ids():
            request = pending_request(graph.get_state(_config(run_id)))
            if request is not None:
                out.append({"run_id": run_id, "request": request, "answered": runs.read_decision(run_id)})
    return out


def run_values(run_id: str, *, run_dir=None, checkpointer=None) -> dict:
    """The latest checkpointed state of a run."""
    runs = open_runs(run_dir, checkpointer)
    runs.read_info(run_id)
    with runs.graph() as graph:
        snapshot = graph.get_state(_config(run_id))
    return {**snapshot.values, "next": list(snapshot.next)}


def list_runs(*, run_dir=None, checkpointer=None) -> list[dict]:
    """Every run in the folder (or checkpoint database) with its task, progress and status."""
    out = []
    runs = open_runs(run_dir, checkpointer)
    with runs.graph() as graph:
        for run_id in runs.list_ids():
            try:
                info = runs.read_info(run_id)
            except GradpromptError as exc:  # one damaged run.json must not hide the other runs
                out.append({"run_id": run_id, "status": "damaged", "problem": str(exc)})
                continue
            snap = graph.get_state(_config(run_id))
            values = snap.values or {}
            status = "finished" if values.get("final") else "stopped" if values else "not started"
            final = values.get("final") or {}
            out.append(
                {
                    "run_id": run_id,
                    "task": info["settings"]["task"],
                    "model": info["settings"]["model"],
                    "variant": info["settings"]["variant"],
                    "created": info.get("created"),
                    "parent": info.get("parent"),
                    "steps": values.get("step", 0),
                    "of_steps": info["settings"]["steps"],
                    "status": status,
                    "next": list(snap.next),
                    "best_dev": (final.get("best") or {}).get("dev_accuracy"),
                    "best_test": (final.get("best") or {}).get("test_accuracy"),
                }
            )
    return out


def fork(
    run_id: str,
    step: int,
    prompt: str | None = None,
    *,
    run_dir=None,
    checkpointer: str | None = None,
    steps: int | None = None,
    new_id: str | None = None,
) -> str:
    """Start a new run from the checkpoint where ``run_id`` began step ``step``, optionally with a
    hand-edited prompt and a new step budget. The original run is left untouched."""
    runs = open_runs(run_dir, checkpointer)
    info = runs.read_info(run_id)
    new_id = check_run_id(new_id) if new_id else new_run_id(f"{run_id.rsplit('-', 3)[0]}-fork")
    with runs.lock(run_id, "fork"), runs.lock(new_id, "fork"), runs.graph() as graph:
        found = None
        for snap in graph.get_state_history(_config(run_id)):
            if snap.values.get("step") == step and snap.next and snap.next[0] in (FIRST_STEP_NODE, "finalize"):
                found = snap
                break
        if found is None:
            done = graph.get_state(_config(run_id)).values.get("step", 0)
            raise GradpromptError(f"run {run_id} has no checkpoint at the start of step {step}: choose 0..{done}")
        values = dict(found.values)
        settings = RunSettings.model_validate(values["settings"])
        if steps is not None:
            settings = settings.model_copy(update={"steps": steps})
        if settings.steps <= step:
            raise GradpromptError(
                f"the fork starts at step {step} but the budget is {settings.steps} steps: pass --steps"
            )
        if prompt is not None:
            rt = session(settings).rt
            ids = rt.encode_prompt(prompt)
            values.update(prompt=list(ids), prompt_text=rt.decode(ids), position=min(values["position"], len(ids)))
        values.update(run_id=new_id, settings=settings.model_dump(), done=False, stop_reason="", final={})
        runs.write_info(
            new_id,
            {
                "run_id": new_id,
                "settings": settings.model_dump(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "parent": {"run_id": run_id, "step": step, "prompt": prompt},
                "task": info["settings"]["task"],
            },
        )
        graph.update_state(_config(new_id), values, as_node=LAST_STEP_NODE)
    return new_id


def evaluate_prompt(task: str, prompt: str, model: str = "smollm2", split: str = "dev", **settings: Any) -> dict:
    """Accuracy of ``prompt`` on a split, computed exactly as runs compute it."""
    if split not in ("train", "dev", "test"):
        raise GradpromptError(f"unknown split {split!r}: use train, dev or test")
    s = make_settings(task, model=model, **settings)
    load_inputs(s)
    sess = session(s)
    examples = getattr(sess.splits, split)
    ids = tuple(sess.rt.encode_prompt(prompt))
    r = rollout(sess.rt, sess.readout, examples, [ids], s.max_new_tokens, label=f"{split} evaluation")[0]
    low, high = wilson_interval(sum(r.correct), len(r.correct))
    return {
        "task": task,
        "model": model,
        "split": split,
        "examples": len(examples),
        "prompt": prompt,
        "readout": "choice" if sess.readout.chooses else "generate",
        "max_new_tokens": s.max_new_tokens,
        "accuracy": r.accuracy,
        "ci95": [low, high],
        "prompt_nll": r.nll,
        "score": r.score(s.score_nll_weight),
    }


def report(
    run_id: str, *, out=None, fmt: str = "html", score_dev: bool = False, run_dir=None, checkpointer=None
) -> Path:
    """Write a run's report (``html``: one self-contained file; ``md``: Markdown + PNGs) into
    ``out`` (default: the run's folder) and return its path. The report reads the checkpoint only;
    ``score_dev`` also scores every prompt the run moved through on the dev split (loads the model),
    so the dev curve has a point per step, not only for the prompts the final choice compared."""
    from graph.report_render import write_report
    from graph.run_report import build_report, step_prompts

    if fmt not in ("html", "md"):
        raise GradpromptError(f"unknown report format {fmt!r}: use html or md")
    values = run_values(run_id, run_dir=run_dir, checkpointer=checkpointer)
    if not values.get("history") and not values.get("final"):
        raise GradpromptError(f"run {run_id} has no finished step yet: resume it, then ask for its report")
    extra = None
    if score_dev:
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
