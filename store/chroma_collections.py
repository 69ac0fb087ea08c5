"""The trajectory's collections in Chroma: the task registry, one collection of prompts per model,
the move from the earlier one-collection layout, and paged reads (one read of a large store would
overflow SQLite's variable limit)."""

from __future__ import annotations

import hashlib
import weakref

from gradprompt.store.trajectory_record import TrajectoryRecord

PROMPTS = "gradprompt-prompts"  # one collection for every model: the earlier layout, moved on open
MODEL_PROMPTS = "gradprompt-prompts-"  # + a digest of the model name: one collection per model
TASKS = "gradprompt-tasks"
COSINE = {"hnsw": {"space": "cosine"}}
OPENED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> its Collections


PAGE = 5000  # rows per read or delete: one read of a large store overflows SQLite's variable limit


class Collections:
    """The open collections of a store: the tasks, and the prompts of each model."""

    def __init__(self, client, tasks):
        self.client = client
        self.tasks = tasks
        self._models: dict[str, object] = {}

    def of_model(self, model: str, create: bool = False):
        """The collection of a model's prompts (None when nothing was recorded for it)."""
        if model in self._models:
            return self._models[model]
        name = MODEL_PROMPTS + hashlib.sha1(model.encode()).hexdigest()[:20]
        if create:
            found = self.client.get_or_create_collection(
                name, configuration=COSINE, metadata={"model": model}, embedding_function=None
            )
        elif name in self._names():
            found = self.client.get_collection(name, embedding_function=None)
        else:
            return None
        self._models[model] = found
        return found

    def every_model(self) -> list:
        return [self.client.get_collection(n, embedding_function=None) for n in self._names() if n != PROMPTS]

    def _names(self) -> list[str]:
        return [c.name for c in self.client.list_collections() if c.name.startswith(PROMPTS)]

    def upsert(self, records: list[TrajectoryRecord], vectors: list[list[float]]) -> None:
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_model.setdefault(r.model, []).append(i)
        for model, rows in by_model.items():
            prompts = self.of_model(model, create=True)
            for start in range(0, len(rows), PAGE):
                part = rows[start : start + PAGE]
                prompts.upsert(
                    ids=[records[i].id for i in part],
                    documents=[records[i].text for i in part],
                    embeddings=[vectors[i] for i in part],
                    metadatas=[records[i].metadata() for i in part],
                )

    def move_single_collection(self) -> None:
        """Move a store written with one collection for every model to one collection per model.
        Records keep their ids, so a move interrupted and done again (or done by two processes
        sharing a server) stores each record once; the old collection goes when it is empty."""
        if PROMPTS not in self._names():
            return
        old = self.client.get_collection(PROMPTS, embedding_function=None)
        while True:
            page = old.get(limit=PAGE, include=["documents", "metadatas", "embeddings"])
            if not page["ids"]:
                break
            rows = zip(page["documents"], page["metadatas"], strict=True)
            records = [TrajectoryRecord.from_chroma(d, m) for d, m in rows]
            self.upsert(records, [[float(x) for x in v] for v in page["embeddings"]])
            old.delete(ids=page["ids"])
        self.client.delete_collection(PROMPTS)


def query_rows(prompts, vector: list[list[float]], n: int, where: dict | None) -> list[tuple[str, dict, float]]:
    """The ``n`` nearest rows: (document, metadata, cosine distance)."""
    include = ["documents", "metadatas", "distances"]
    got = prompts.query(query_embeddings=vector, n_results=n, where=where, include=include)
    return list(zip(got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True))


def get_all(collection, where: dict | None, include: list[str]) -> dict[str, list]:
    """Every matching row of a collection, read a page at a time."""
    out: dict[str, list] = {"ids": [], **{k: [] for k in include}}
    offset = 0
    while True:
        page = collection.get(where=where, include=include, limit=PAGE, offset=offset)
        for key in out:
            out[key].extend(page[key] if page[key] is not None else [])
        if len(page["ids"]) < PAGE:
            return out
        offset += PAGE


def equal_filter(equal: dict) -> dict | None:
    """A Chroma filter: every metadata field equal to the given value."""
    clauses = [{k: v} for k, v in equal.items()]
    return None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}
