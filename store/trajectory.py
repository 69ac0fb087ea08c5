"""The optimization trajectory in Chroma: every evaluated prompt of every run, searchable by meaning.

GPO's update direction is "prompts like the current one, with their scores"; this store keeps them
across runs and tasks. The embedded default is a ``PersistentClient`` folder; an ``http://HOST:PORT``
location talks to a ``chroma run`` server so that many runs on many machines share one trajectory.
Record ids are derived from (run, step, source, prompt), so writing the same record twice (a
resumed run re-running its record node) stores it once.

Every read is for one model, so each model's prompts live in a collection of their own: a metadata
filter over a large collection costs in proportion to the rows it matches, and "this model" matches
a large share of a store shared by few models. Within a model's collection a same-task read filters
by task (a small share) and a cross-task read searches unfiltered and drops the task's own prompts
itself. A store written with one collection for every model is moved to this layout when opened.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from gradprompt.errors import GradpromptError
from gradprompt.store import chroma_collections
from gradprompt.store.chroma_client import chroma_client, default_location, held_client, holding, is_server
from gradprompt.store.chroma_collections import (
    COSINE,
    OPENED,
    TASKS,
    Collections,
    equal_filter,
    get_all,
    query_rows,
)
from gradprompt.store.embeddings import BUNDLED, embedding_identity, get_embedder
from gradprompt.store.trajectory_record import Hit, TrajectoryRecord, better_record, record_rank


class TrajectoryStore:
    """Prompts recorded by runs, with their scores, searchable by embedding cosine similarity."""

    def __init__(self, location: str | os.PathLike | None = None, embeddings: str = BUNDLED):
        self.location = str(location) if location else default_location()
        self.remote = is_server(self.location)
        self._server = None
        with self._collections():
            pass  # fail now, with a clear message, if the store cannot be opened
        self.embeddings = embedding_identity(embeddings)
        self.embedder = get_embedder(embeddings)
        self._embeddings_checked = False

    def _embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for ``texts``, once the store is known to hold vectors of this embedding model:
        similarities between two models' vectors mean nothing, so a store keeps to the model it
        was filled with (stores from before the choice existed hold the bundled one)."""
        if not self._embeddings_checked:
            with self._collections() as opened:
                marker = (opened.tasks.metadata or {}).get("embeddings")
                if marker is None:
                    empty = not opened.tasks.count() and not any(c.count() for c in opened.every_model())
                    marker = self.embeddings if empty else BUNDLED
                    if empty:
                        opened.tasks.modify(metadata={**(opened.tasks.metadata or {}), "embeddings": marker})
            if marker != self.embeddings:
                raise GradpromptError(
                    f"the trajectory store at {self.location} holds embeddings of {marker!r}, not {self.embeddings!r}: "
                    f"pass --embeddings {marker} to use it, or --store with another folder for the new model"
                )
            self._embeddings_checked = True
        return self.embedder.embed(texts)

    @contextmanager
    def _collections(self) -> Iterator[Collections]:
        """The store's collections. A folder store is held (and its client kept) for the operation
        or, when a run holds it, for the run; a server keeps one client. A folder another process is
        using at the moment is refused."""
        with holding(self.location):
            yield from self._open_collections()

    def _open_collections(self) -> Iterator[Collections]:
        try:
            client = self._server or (chroma_client(self.location) if self.remote else held_client(self.location))
            opened = OPENED.get(client)
            if opened is None:  # once per client: a run's many reads and writes share one
                tasks = client.get_or_create_collection(TASKS, configuration=COSINE, embedding_function=None)
                opened = Collections(client, tasks)
                opened.move_single_collection()
                OPENED[client] = opened
        except GradpromptError:
            raise
        except Exception as exc:  # connection refused, a corrupted folder, a version mismatch
            raise GradpromptError(
                f"cannot open the trajectory store at {self.location} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); start the server, fix the path, or move "
                "a damaged folder away to start a fresh store"
            ) from None
        if self.remote:
            self._server = client
        yield opened

    # ----- writing ------------------------------------------------------------------------------
    def add(self, records: list[TrajectoryRecord], embeddings: list[list[float]] | None = None) -> None:
        """Insert or overwrite records; the same (run, step, source, prompt) is one record. With
        ``embeddings`` (one per record, e.g. from an export) the texts are not embedded again."""
        if embeddings is not None and len(embeddings) != len(records):
            raise ValueError(f"{len(records)} records but {len(embeddings)} embeddings")
        by_id = {r.id: (r, None if embeddings is None else embeddings[i]) for i, r in enumerate(records)}
        if not by_id:
            return
        unique = [r for r, _ in by_id.values()]
        vectors = self._embed([r.text for r in unique]) if embeddings is None else [v for _, v in by_id.values()]
        with self._collections() as opened:
            opened.upsert(unique, vectors)

    def register_task(self, name: str, questions: list[str], answer_kind: str) -> None:
        """Remember what a task looks like (mean embedding of some of its questions) for warm starts."""
        vector = _mean(self._embed(questions[:32]))
        with self._collections() as opened:
            opened.tasks.upsert(
                ids=[name],
                embeddings=[vector],
                documents=[questions[0]],
                metadatas=[{"task": name, "answer_kind": answer_kind}],
            )

    # ----- reading ------------------------------------------------------------------------------
    def count(self) -> int:
        with self._collections() as opened:
            return sum(c.count() for c in opened.every_model())

    def similar(
        self,
        text: str,
        *,
        model: str,
        k: int,
        task: str | None = None,
        exclude_task: str | None = None,
        exclude_text: str | None = None,
        splits: str | None = None,
    ) -> list[Hit]:
        """The ``k`` distinct prompts most similar to ``text`` recorded for ``model`` (and ``task``,
        or any task but ``exclude_task``), each with its best recorded score. With ``splits``, a dev
        score recorded under other splits of the same task is not used as the prompt's score (its
        dev examples may be this run's test examples); the prompt itself is still retrieved."""
        if k <= 0:
            return []
        vector = self._embed([text])
        with self._collections() as opened:
            prompts = opened.of_model(model)
            total = prompts.count() if prompts is not None else 0
            if total == 0:
                return []
            wanted = min(total, 8 * k)
            if task is not None:
                rows = query_rows(prompts, vector, wanted, {"task": task})
            elif exclude_task is None:
                rows = query_rows(prompts, vector, wanted, None)
            else:
                # unfiltered first, as a filter costs in proportion to what it matches; when the
                # task's own prompts crowd out the others among the nearest, the filter after all
                seen = min(total, 4 * wanted)
                rows = [row for row in query_rows(prompts, vector, seen, None) if row[1]["task"] != exclude_task]
                if len({doc for doc, _, _ in rows} - {exclude_text}) < k and seen < total:
                    rows = query_rows(prompts, vector, wanted, {"task": {"$ne": exclude_task}})
        best: dict[str, Hit] = {}
        for doc, meta, dist in rows:
            if doc == exclude_text:
                continue
            record = TrajectoryRecord.from_chroma(doc, meta)
            if splits is not None and record.dev_accuracy is not None and record.splits != splits:
                record = replace(record, dev_accuracy=None, score=None)
            hit = Hit(record, 1.0 - float(dist))
            old = best.get(doc)
            if old is None or better_record(hit.record, old.record):
                best[doc] = hit
        return sorted(best.values(), key=lambda h: -h.similarity)[:k]

    def records(self, **where_equal) -> list[TrajectoryRecord]:
        """Every record whose metadata equals the given values (e.g. ``run_id=...``)."""
        return [r for r, _ in self._read(where_equal, ["documents", "metadatas"])]

    def records_with_embeddings(self, **where_equal) -> list[tuple[TrajectoryRecord, list[float]]]:
        """Like :meth:`records`, each with its stored vector (to move records without embedding again)."""
        rows = self._read(where_equal, ["documents", "metadatas", "embeddings"])
        return [(r, [float(x) for x in v]) for r, v in rows]

    def _read(self, where_equal: dict, include: list[str]) -> list[tuple[TrajectoryRecord, list | None]]:
        where_equal = dict(where_equal)
        model = where_equal.pop("model", None)
        out = []
        with self._collections() as opened:
            for prompts in opened.every_model() if model is None else [opened.of_model(model)]:
                if prompts is None:
                    continue
                got = get_all(prompts, equal_filter(where_equal), include)
                vectors = got.get("embeddings") or [None] * len(got["ids"])
                out += [
                    (TrajectoryRecord.from_chroma(d, m), v)
                    for d, m, v in zip(got["documents"], got["metadatas"], vectors, strict=True)
                ]
        return out

    def best(self, *, task: str, model: str, k: int) -> list[TrajectoryRecord]:
        """The ``k`` distinct prompts of a task with the best dev accuracy, else minibatch score."""
        pool: dict[str, TrajectoryRecord] = {}
        for r in self.records(task=task, model=model):
            if r.score is None and r.dev_accuracy is None:
                continue
            if r.text not in pool or better_record(r, pool[r.text]):
                pool[r.text] = r
        return sorted(pool.values(), key=record_rank)[:k]

    def similar_tasks(self, questions: list[str], *, exclude: str, k: int) -> list[tuple[str, float]]:
        vector = _mean(self._embed(questions[:32]))
        with self._collections() as opened:
            tasks = opened.tasks
            total = tasks.count()
            if total == 0:
                return []
            result = tasks.query(
                query_embeddings=[vector], n_results=min(total, k + 1), include=["metadatas", "distances"]
            )
        out = [(m["task"], 1.0 - float(d)) for m, d in zip(result["metadatas"][0], result["distances"][0], strict=True)]
        return [(t, s) for t, s in out if t != exclude][:k]

    def stats(self) -> dict:
        records = self.records()
        dates = [r.recorded for r in records if r.recorded is not None]
        return {
            "location": self.location,
            "records": len(records),
            "distinct_prompts": len({r.text for r in records}),
            "runs": len({r.run_id for r in records}),
            "size_on_disk": None if self.remote else _folder_size(Path(self.location)),
            "oldest": _iso(min(dates)) if dates else None,
            "newest": _iso(max(dates)) if dates else None,
            "undated": len(records) - len(dates),
            "tasks": dict(Counter(r.task for r in records).most_common()),
            "models": dict(Counter(r.model for r in records).most_common()),
            "sources": dict(Counter(r.source for r in records).most_common()),
            "versions": dict(Counter(r.version or "unknown" for r in records).most_common()),
        }

    def prune(
        self,
        *,
        before: float | None = None,
        task: str | None = None,
        model: str | None = None,
        run_id: str | None = None,
        dry_run: bool = False,
    ) -> dict:
        """Delete the records matching every criterion given: recorded before ``before`` (seconds
        since the epoch; records written before records were dated count as older than any date),
        of ``task``, ``model`` or run ``run_id``. A task left with no records is forgotten for warm
        starts too. Returns how many records (per task) were, or with ``dry_run`` would be, deleted."""
        if before is None and task is None and model is None and run_id is None:
            raise GradpromptError("store prune needs at least one of --older-than, --task, --model or --run")
        given = {k: v for k, v in (("task", task), ("run_id", run_id)) if v is not None}
        with self._collections() as opened:
            doomed: list[tuple[object, str, str]] = []  # (collection, id, task)
            for prompts in opened.every_model() if model is None else [opened.of_model(model)]:
                if prompts is None:
                    continue
                got = get_all(prompts, equal_filter(given), ["metadatas"])
                doomed += [
                    (prompts, i, m["task"])
                    for i, m in zip(got["ids"], got["metadatas"], strict=True)
                    if before is None or m.get("recorded", float("-inf")) < before
                ]
            forgotten: list[str] = []
            if not dry_run and doomed:
                for prompts in {id(c): c for c, _, _ in doomed}.values():
                    ids = [i for c, i, _ in doomed if c is prompts]
                    for start in range(0, len(ids), chroma_collections.PAGE):  # under the server's largest batch
                        prompts.delete(ids=ids[start : start + chroma_collections.PAGE])
                left = opened.every_model()
                for name in sorted({t for _, _, t in doomed}):
                    if not any(c.get(where={"task": name}, limit=1, include=[])["ids"] for c in left):
                        opened.tasks.delete(ids=[name])
                        forgotten.append(name)
        return {
            "deleted": 0 if dry_run else len(doomed),
            "matched": len(doomed),
            "tasks": dict(Counter(t for _, _, t in doomed).most_common()),
            "tasks_forgotten": forgotten,
            "dry_run": dry_run,
        }

    def export(self, path: str | os.PathLike) -> int:
        records = sorted(self.records(), key=lambda r: (r.run_id, r.step, r.source, r.text))
        tmp = Path(f"{path}.tmp")
        with tmp.open("w") as fh:
            for r in records:
                fh.write(json.dumps(r.to_json()) + "\n")
        os.replace(tmp, path)
        return len(records)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _mean(vectors: list[list[float]]) -> list[float]:
    n = len(vectors)
    mean = [sum(col) / n for col in zip(*vectors, strict=True)]
    norm = sum(x * x for x in mean) ** 0.5 or 1.0
    return [x / norm for x in mean]


@lru_cache(maxsize=8)
def open_store(location: str | None = None, embeddings: str = BUNDLED) -> TrajectoryStore:
    """One store client per process and location."""
    return TrajectoryStore(location, embeddings)
