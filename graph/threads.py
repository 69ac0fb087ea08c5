"""A run is a LangGraph thread (thread id = run id) in the place runs live; this compiles the
optimizer graph over that place's checkpointer and rollout store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gradprompt.graph.builder import build_graph


def config(run_id: str) -> dict:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": 1_000_000}


@contextmanager
def run_graph(runs) -> Iterator:
    """The optimizer graph compiled with ``runs``' checkpointer and rollout store (a runs folder's
    SQLite files or a PostgreSQL database, see :func:`store.checkpoints.open_runs`)."""
    with runs.persistence() as (saver, store):
        yield build_graph(checkpointer=saver, store=store)
