"""Every (prompt, example) rollout result, computed once and kept out of the checkpointed state.

A rollout (reasoning, answer, whether it is right, the gold answer's log-probability, the prompt's
NLL) is a function of the prompt's token ids, the example, the model and the decoding settings.
The cache is a LangGraph store (``BaseStore``): the SQLite file next to the run's checkpoints when
the API or CLI drives the run, the server's own store under ``langgraph dev``, and an in-process
store when the graph is compiled without one. Its namespace is a fingerprint of everything that
changes a result, so a resumed or forked run, in this process or a later one, finds the rollouts
it already paid for. Writes happen only after a batch of rollouts is complete; a run killed
halfway recomputes at most that batch, and identically.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from functools import lru_cache

from langgraph.store.base import BaseStore, GetOp, PutOp
from langgraph.store.memory import InMemoryStore

from gradprompt.nodes.selection import Outcome
from gradprompt.nodes.tasks.task import Example


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def example_key(example: Example) -> str:
    return _digest(example.question, example.answer)[:20]


def prompt_key(prompt: Sequence[int]) -> str:
    return _digest(",".join(map(str, prompt)))[:20]


def rollout_fingerprint(settings, readout) -> str:
    """What makes a rollout's result what it is, besides the prompt and the example."""
    parts = {
        "model": settings.model,
        "dtype": settings.dtype,
        "device": settings.device,
        "placement": settings.placement,
        "max_new_tokens": settings.max_new_tokens,
        "readout": readout.to_json(),
    }
    return _digest(json.dumps(parts, sort_keys=True))[:16]


@lru_cache(maxsize=1)
def _process_store() -> InMemoryStore:
    """For graphs compiled without a store: the cache still spans the process."""
    return InMemoryStore()


_generated = [0]  # rollouts this process has generated (cache misses), for run budgets
_generated_lock = threading.Lock()


def generated() -> int:
    """How many (prompt, example) rollouts this process has had to generate so far: every miss is
    generated right after it is looked up, so the difference across a node is that node's work."""
    with _generated_lock:
        return _generated[0]


def cache_namespace(fingerprint: str) -> tuple[str, ...]:
    return ("gradprompt", "rollouts", fingerprint)


class RolloutCache:
    """(prompt, example) -> :class:`Outcome` in one namespace of a LangGraph store."""

    def __init__(self, store: BaseStore | None, namespace: tuple[str, ...]):
        self.store = store if store is not None else _process_store()
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    def get(self, prompt: Sequence[int], examples: Sequence[Example]) -> list[Outcome | None]:
        """Cached outcomes of ``prompt`` on ``examples`` (None where not computed yet)."""
        if not examples:
            return []
        p = prompt_key(prompt)
        items = self.store.batch([GetOp(self.namespace, f"{p}:{example_key(e)}") for e in examples])
        out = [Outcome.from_json(item.value) if item is not None else None for item in items]
        found = sum(o is not None for o in out)
        self.hits += found
        self.misses += len(out) - found
        with _generated_lock:
            _generated[0] += len(out) - found
        return out

    def put(self, entries: Sequence[tuple[Sequence[int], Example, Outcome]]) -> None:
        if entries:
            self.store.batch(
                [
                    PutOp(self.namespace, f"{prompt_key(p)}:{example_key(e)}", o.to_json(), index=False)
                    for p, e, o in entries
                ]
            )
