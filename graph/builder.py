"""The optimizer as a LangGraph ``StateGraph``: one node per part of a step, wired in a loop.

    prepare -> [retrieve -> reason -> propose -> refine -> evaluate -> select -> approve -> record -> advance]*
            -> finalize

The step's nodes are listed once in :data:`STEP_NODES`; the loop is wired from that list, so a node
added to a step (retrieval before ``reason``, refinement after ``propose``, human approval before
``record``) is one entry there and one import in :func:`node_function`, not new wiring.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import replace

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.state import State

# Each name is a node and the module in nodes/ that holds its function of the same name.
STEP_NODES: tuple[str, ...] = (
    "retrieve",
    "reason",
    "propose",
    "refine",
    "evaluate",
    "select",
    "approve",
    "record",
    "advance",
)
FIRST_STEP_NODE = STEP_NODES[0]
LAST_STEP_NODE = STEP_NODES[-1]


def node_function(name: str) -> Callable[[State, Runtime[Context]], dict]:
    """A node's function, imported when the node first runs: compiling the graph to read a run's
    state (``runs list``, ``runs show``, ``approve``) runs no node, so it never loads the model."""
    from gradprompt.nodes import (
        advance,
        approve,
        evaluate,
        finalize,
        prepare,
        propose,
        reason,
        record,
        refine,
        retrieve,
        select,
    )

    modules = (advance, approve, evaluate, finalize, prepare, propose, reason, record, refine, retrieve, select)
    return getattr({m.__name__.rsplit(".", 1)[1]: m for m in modules}[name], name)


def run_runtime(state: State, runtime: Runtime[Context]) -> Runtime[Context]:
    """The runtime a node gets: the caller's context with the run's session in it, holding the
    graph's store as its rollout cache. The driver's session serves while the state's settings are
    the ones it was built for; a run without one (the server), or whose settings a person changed
    mid-run, gets the session of its current settings from the process's caches (the model and the
    task load once per process)."""
    from gradprompt.nodes.session import Session, session

    context = runtime.context if isinstance(runtime.context, Context) else Context()
    settings = RunSettings.model_validate(state["settings"])
    sess = context.session
    if not isinstance(sess, Session) or sess.settings != settings:
        sess = session(settings)
    if sess.cache_store is not runtime.store:
        sess = replace(sess, cache_store=runtime.store)
    return runtime.override(context=replace(context, session=sess))


def _timed(name: str) -> Callable[..., dict]:
    """Wrap a node so it gets the run's runtime (:func:`run_runtime`) and the seconds it took land in
    the step's ``timings`` and, with the rollouts it generated, in the run's ``spent`` (what time
    and rollout budgets count, across processes)."""

    def node(state: State, runtime: Runtime[Context]) -> dict:
        from gradprompt.nodes.rollout_cache import counting_rollouts

        fn = node_function(name)
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
    return node


def route_after_step(state: State) -> str:
    return "finalize" if state.get("done") else FIRST_STEP_NODE


def build_graph(checkpointer=None, store=None):
    """The compiled optimizer graph. Pass a checkpointer (e.g. ``SqliteSaver``) to make runs
    resumable; the LangGraph server brings its own, so it compiles this without one."""
    builder = StateGraph(State, context_schema=Context)
    for name in ("prepare", *STEP_NODES, "finalize"):
        builder.add_node(name, _timed(name))
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", route_after_step, [FIRST_STEP_NODE, "finalize"])
    for a, b in itertools.pairwise(STEP_NODES):
        builder.add_edge(a, b)
    builder.add_conditional_edges(LAST_STEP_NODE, route_after_step, [FIRST_STEP_NODE, "finalize"])
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, store=store)
