"""Starting and driving runs: validated settings in, a checkpointed LangGraph thread driven to the
end (or to a clean stop), an :class:`OptimizationResult` out.

Every node is checkpointed with durable writes (to the runs folder's SQLite file, or to PostgreSQL
with ``checkpointer="postgresql://..."`` or ``GRADPROMPT_CHECKPOINTER``), so a run stopped by Ctrl-C,
a crash or SIGKILL continues from its last finished node with ``resume(run_id)`` and nothing
counted twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph.types import Command
from pydantic import ValidationError

from gradprompt.errors import GradpromptError
from gradprompt.graph.approval_protocol import ApprovalPending, Approver, pending_request
from gradprompt.graph.run_inputs import with_run_inputs
from gradprompt.graph.threads import config, run_graph
from gradprompt.nodes.context import Context
from gradprompt.nodes.runtime.model_loading import check_model
from gradprompt.nodes.session import load_inputs, session
from gradprompt.nodes.settings import RunSettings
from gradprompt.store.checkpoints import new_run_id, open_runs
from gradprompt.store.locks import check_run_id

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

    def predictor(self, prompt: str = "final", *, run_dir=None, checkpointer: str | None = None):
        """A predictor that answers new questions with this run's prompt under its reading (see
        :func:`graph.predict.load`; pass the run's ``run_dir`` or ``checkpointer`` if not the default)."""
        from gradprompt.graph.predict import load

        return load(self.run_id, prompt, run_dir=run_dir, checkpointer=checkpointer)


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
def in_use(runs, run_id: str, doing: str, settings: dict | None = None) -> Iterator[None]:
    """Hold the run (and, for a run that writes its trajectory to a store folder, that folder) for
    the block, so a second process that drives, answers or forks it is refused, not interleaved."""
    with ExitStack() as stack:
        stack.enter_context(runs.lock(run_id, doing))
        if settings and settings.get("trajectory", True):
            from gradprompt.store.chroma_client import holding

            stack.enter_context(holding(settings.get("store")))
        yield


class StopRequest:
    """First Ctrl-C asks the run to stop at the next node boundary; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
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


def drive(
    graph,
    run_id: str,
    graph_input,
    settings: dict,
    on_update: Update | None,
    chat_model=None,
    approver: Approver | None = None,
) -> dict:
    """Run the graph to the end, checkpointing every node durably. A stop request ends it at the
    next node boundary; an approval request goes to ``approver`` or, without one, ends the call
    with :class:`ApprovalPending` (the run stays resumable).

    The run's session (model, task, splits) is built here, once for the run, from ``settings``,
    and handed to every node in the graph's runtime context; the time it took counts in the run's
    spent time."""
    with StopRequest() as stop:
        start = time.perf_counter()
        sess = session(settings)
        context = Context(chat_model=chat_model, session=sess, load_seconds=[time.perf_counter() - start])
        while True:
            stream = graph.stream(
                graph_input,
                config(run_id),
                stream_mode="updates",
                durability="sync",
                context=context,
            )
            for chunk in stream:
                for node, update in chunk.items():
                    if not isinstance(update, dict):
                        continue
                    if on_update is not None:
                        on_update(node, update, settings)
                if stop.requested:
                    raise RunStopped(run_id)
            snapshot = graph.get_state(config(run_id))
            request = pending_request(snapshot)
            if request is None:
                return snapshot.values
            if approver is None:
                raise ApprovalPending(run_id, request)
            graph_input = Command(resume=approver(request))


def result_of(values: dict) -> OptimizationResult:
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
    examples: list[dict] | None = None,
) -> OptimizationResult:
    """Start a run with validated settings (see :func:`optimize` for the friendly form);
    ``examples`` are the rows of an in-memory task, kept with the run."""
    task, _ = load_inputs(settings)  # bad data fails here, before a model is loaded
    check_model(settings.model)
    runs = open_runs(run_dir, checkpointer)
    run_id = check_run_id(run_id) if run_id else new_run_id(task.name)
    with in_use(runs, run_id, "optimize", settings.model_dump()), run_graph(runs) as graph:
        if graph.get_state(config(run_id)).values:
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
        if examples is not None:
            runs.write_examples(run_id, examples)
        if on_start:
            on_start(run_id)
        values = drive(
            graph,
            run_id,
            {"run_id": run_id, "settings": settings.model_dump()},
            settings.model_dump(),
            on_update,
            chat_model,
            approver,
        )
    return result_of(values)


def optimize(
    task: str | None = None,
    model: str = "smollm2",
    *,
    examples: Any = None,
    metric: Callable[[str, str], bool | float] | str | None = None,
    name: str = "examples",
    run_dir=None,
    checkpointer: str | None = None,
    run_id: str | None = None,
    on_update: Update | None = None,
    chat_model=None,
    approver: Approver | None = None,
    **settings: Any,
) -> OptimizationResult:
    """Optimize a prompt for ``task`` (a spec such as ``builtin:compare`` or ``bbh:path/navigate.json``)
    on ``model``, or for ``examples`` held in memory: a list of ``{"question": ..., "answer": ...}``
    dicts or a pandas DataFrame with those columns (other column names via ``question_field`` and
    ``answer_field``), kept with the run so it resumes like any other (``name`` names the task).

    ``metric(prediction_text, gold) -> bool | float`` replaces the built-in correctness wherever
    the run measures accuracy: racing, acceptance, the final choice and the reported scores
    (``prediction_text`` is what the readout read as the answer; a number counts as right at 0.5 or
    more, since the paired tests count right and wrong). The gradient still follows the gold
    answer's log-probability: a metric gives no gradient. The metric is stored by its import path
    (``module:function``, also accepted as a string), so it must be a top-level function of an
    importable module; ``resume`` imports it again and says so clearly when it cannot.

    Keyword settings are those of :class:`nodes.settings.RunSettings` (``steps``, ``train``,
    ``dev``, ``test``, ``seed``, ``max_new_tokens``, ``variant``, ``store``, ``time_budget``,
    ``max_rollouts``, ``warm_start`` ...). ``chat_model`` is any LangChain chat model for the
    refinement step; by default the run's own local model writes the refined prompts. With
    ``human_approval=True`` every update waits for a person: ``approver(request)`` answers
    in-process, or, without one, :class:`ApprovalPending` is raised and the run waits for
    :func:`approve` + :func:`resume`."""
    from gradprompt.nodes.tasks.inline import register
    from gradprompt.nodes.tasks.metric import metric_path

    rows = None
    if (task is None) == (examples is None):
        raise GradpromptError("pass either task (a spec such as builtin:compare) or examples=[...], not both")
    if examples is not None:
        task, rows = register(examples, name, settings.get("question_field"), settings.get("answer_field"))
    if metric is not None:
        settings["metric"] = metric_path(metric)
    return start_run(
        make_settings(task, model=model, **settings),
        run_dir=run_dir,
        checkpointer=checkpointer,
        run_id=run_id,
        on_update=on_update,
        chat_model=chat_model,
        approver=approver,
        examples=rows,
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
    with in_use(runs, run_id, "resume", info.get("settings")), run_graph(runs) as graph:
        snapshot = graph.get_state(config(run_id))
        if not snapshot.values:
            raise NoCheckpointYet(f"run {run_id} has no checkpoint yet: start it again with `gradprompt optimize`")
        if not snapshot.next:
            return result_of(snapshot.values)
        settings = snapshot.values.get("settings") or info["settings"]
        with_run_inputs(runs, run_id, settings)
        graph_input, answer = None, None
        request = pending_request(snapshot)
        if request is not None:
            answer = runs.read_decision(run_id)
            if answer is None and approver is None:
                raise ApprovalPending(run_id, request)
            graph_input = Command(resume=answer if answer is not None else approver(request))
        try:
            values = drive(graph, run_id, graph_input, settings, on_update, chat_model, approver)
        finally:
            if answer is not None:  # forget the answer once the step it was for has moved on
                now = pending_request(graph.get_state(config(run_id)))
                if now is None or now.get("step") != answer.get("step"):
                    runs.clear_decision(run_id)
    return result_of(values)
