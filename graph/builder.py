"""The optimizer as a LangGraph ``StateGraph``: one node per part of a step, wired in a loop.

    prepare -> [retrieve -> reason -> propose -> refine -> evaluate -> select -> approve -> record -> advance]*
            -> finalize

The step's nodes are listed once in :data:`STEP_NODES`; the loop is wired from that list, so a node
added to a step (retrieval before ``reason``, refinement after ``propose``, human approval before
``record``) is one entry there, not new wiring.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import replace

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from gradprompt.nodes.advance import advance
from gradprompt.nodes.approve import approve
from gradprompt.nodes.context import Context
from gradprompt.nodes.evaluate import evaluate
from gradprompt.nodes.finalize import finalize
from gradprompt.nodes.prepare import prepare
from gradprompt.nodes.propose import propose
from gradprompt.nodes.reason import reason
from gradprompt.nodes.record import record
from gradprompt.nodes.refine import refine
from gradprompt.nodes.retrieve import retrieve
from gradprompt.nodes.rollout_cache import counting_rollouts
from gradprompt.nodes.select import select
from gradprompt.nodes.session import Session, session
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.state import State

STEP_NODES: list[tuple[str, Callable[..., dict]]] = [
    ("retrieve", retrieve),
    ("reason", reason),
    ("propose", propose),
    ("refine", refine),
    ("evaluate", evaluate),
    ("select", select),
    ("approve", approve),
    ("record", record),
    ("advance", advance),
]
FIRST_STEP_NODE = STEP_NODES[0][0]
LAST_STEP_NODE = STEP_NODES[-1][0]


def run_runtime(state: State, runtime: Runtime[Context]) -> Runtime[Context]:
    """The runtime a node gets: the caller's context with the run's session in it, holding the
    graph's store as its rollout cache. The driver's session serves while the state's settings are
    the ones it was built for; a run without one (the server), or whose settings a person changed
    mid-run, gets the session of its current settings from the process's caches (the model and the
    task load once per process)."""
    context = runtime.context if isinstance(runtime.context, Context) else Context()
    settings = RunSettings.model_validate(state["settings"])
    sess = context.session
    if not isinstance(sess, Session) or sess.settings != settings:
        sess = session(settings)
    if sess.cache_store is not runtime.store:
        sess = replace(sess, cache_store=runtime.store)
    return runtime.override(context=replace(context, session=sess))


def _timed(name: str, fn: Callable[[State, Runtime[Context]], dict]) -> Callable[..., dict]:
    """Wrap a node so it gets the run's runtime (:func:`run_runtime`) and the seconds it took land in
    the step's ``timings`` and, with the rollouts it generated, in the run's ``spent`` (what time
    and rollout budgets count, across processes)."""

    def node(state: State, runtime: Runtime[Context]) -> dict:
        start = time.perf_counter()
        with counting_rollouts() as rolled:
            update = fn(state, run_runtime(state, runtime))
        base = update.get("timings", state.get("timings", {}))
        if name == FIRST_STEP_NODE:
            base = {}
        loading = getattr(runtime.context, "load_seconds", None)
        took = time.perf_counter() - start + (loading.pop() if loading else 0.0)
        update["timings"] = {**base, name: round(took, 3)}
        spent = update.get("spent", state.get("spent")) or {}
        update["spent"] = {
            "seconds": round(spent.get("seconds", 0.0) + took, 3),
            "rollouts": spent.get("rollouts", 0) + rolled[0],
        }
        return update

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def route_after_step(state: State) -> str:
    return "finalize" if state.get("done") else FIRST_STEP_NODE


def build_graph(checkpointer=None, store=None):
    """The compiled optimizer graph. Pass a checkpointer (e.g. ``SqliteSaver``) to make runs
    resumable; the LangGraph server brings its own, so it compiles this without one."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("prepare", _timed("prepare", prepare))
    for name, fn in STEP_NODES:
        builder.add_node(name, _timed(name, fn))
    builder.add_node("finalize", _timed("finalize", finalize))
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", route_after_step, [FIRST_STEP_NODE, "finalize"])
    for (a, _), (b, _) in itertools.pairwise(STEP_NODES):
        builder.add_edge(a, b)
    builder.add_conditional_edges(LAST_STEP_NODE, route_after_step, [FIRST_STEP_NODE, "finalize"])
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, store=store)
