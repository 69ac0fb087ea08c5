"""Where runs live: a local runs folder (the default) or a PostgreSQL database.

In a runs folder one SQLite database (``checkpoints.sqlite``) holds every run's checkpoints, keyed
by thread id = run id; next to it each run has a folder with ``run.json`` (its settings and
origin), so runs can be listed without reading checkpoints. :func:`open_runs` picks the place:
``--checkpointer postgresql://...`` (or ``GRADPROMPT_CHECKPOINTER``) puts the checkpoints, the
rollout caches and the run index in one database (see :mod:`store.postgres_runs`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import check_run_id, holder_of, run_lock, run_lock_path, serialized
from gradprompt.store.paths import data_dir
from gradprompt.store.runs import Runs, checked_info

DB_NAME = "checkpoints.sqlite"
ROLLOUTS_DB = "rollouts.sqlite"


def runs_dir(run_dir: str | os.PathLike | None = None) -> Path:
    """``run_dir`` if given, else ``$GRADPROMPT_HOME/runs`` (see :func:`store.paths.data_dir`)."""
    path = Path(run_dir).expanduser() if run_dir else data_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id(task_name: str) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in task_name).strip("-")[:32] or "run"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@contextmanager
def _sqlite(path: Path, what: str, fix: str, **connect) -> Iterator[sqlite3.Connection]:
    """A connection usable from LangGraph's worker threads; a damaged file is one clear error."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=120, **connect)
    try:
        yield conn
    except sqlite3.DatabaseError as exc:
        raise GradpromptError(f"the {what} {path} cannot be read ({exc}); {fix}") from None
    finally:
        conn.close()


@contextmanager
def open_checkpointer(run_dir: str | os.PathLike | None = None) -> Iterator[SqliteSaver]:
    """A ``SqliteSaver`` on the runs folder's database, closed afterwards."""
    path = runs_dir(run_dir) / DB_NAME
    with _sqlite(path, "checkpoint database", "move it away to start a fresh one") as conn:
        saver = SqliteSaver(conn)
        with serialized(path.with_name(f".{DB_NAME}.setup")):  # two runs starting at once
            saver.setup()
        yield saver


@contextmanager
def open_rollout_store(run_dir: str | os.PathLike | None = None) -> Iterator:
    """The LangGraph ``SqliteStore`` beside the checkpoints that holds the runs' rollout caches
    (kept out of the checkpoints, which snapshot the whole state at every node)."""
    from langgraph.store.sqlite import SqliteStore

    path = runs_dir(run_dir) / ROLLOUTS_DB
    fix = "move it away (it only saves model time)"
    with _sqlite(path, "rollout cache", fix, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        store = SqliteStore(conn)
        with serialized(path.with_name(f".{ROLLOUTS_DB}.setup")):  # its migrations are not race-safe
            store.setup()
        yield store


@contextmanager
def open_persistence(run_dir: str | os.PathLike | None = None) -> Iterator[tuple]:
    """The runs folder's checkpointer and rollout store, for the graph layer to compile with."""
    with open_checkpointer(run_dir) as saver, open_rollout_store(run_dir) as store:
        yield saver, store


def _write_json(path: Path, data: dict) -> None:
    """Atomic: a killed process never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def write_run_info(run_dir: str | os.PathLike | None, run_id: str, info: dict) -> Path:
    check_run_id(run_id)
    folder = runs_dir(run_dir) / run_id
    _write_json(folder / "run.json", info)
    return folder


def write_decision(run_dir: str | os.PathLike | None, run_id: str, answer: dict) -> None:
    """A person's answer to a pending approval, kept until ``resume`` applies it."""
    _write_json(runs_dir(run_dir) / run_id / "decision.json", answer)


def read_decision(run_dir: str | os.PathLike | None, run_id: str) -> dict | None:
    path = runs_dir(run_dir) / run_id / "decision.json"
    return json.loads(path.read_text()) if path.is_file() else None


def clear_decision(run_dir: str | os.PathLike | None, run_id: str) -> None:
    (runs_dir(run_dir) / run_id / "decision.json").unlink(missing_ok=True)


def list_run_ids(run_dir: str | os.PathLike | None = None) -> list[str]:
    root = runs_dir(run_dir)
    return sorted(p.parent.name for p in root.glob("*/run.json"))


class RunFolder:
    """Runs in a local folder: SQLite checkpoints and rollout caches, ``run.json`` per run, and
    ``flock`` run locks."""

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.run_dir = run_dir
        self.local = runs_dir(run_dir)

    @property
    def where(self) -> str:
        return str(self.local)

    def persistence(self):
        """(checkpointer, store) for the graph layer: storage never compiles the graph itself."""
        return open_persistence(self.run_dir)

    def rollout_store(self):
        return open_rollout_store(self.run_dir)

    def write_info(self, run_id: str, info: dict) -> Path:
        return write_run_info(self.run_dir, run_id, info)

    def raw_info(self, run_id: str) -> dict | None:
        path = self.local / check_run_id(run_id) / "run.json"
        if not path.is_file():
            return None
        try:
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"damaged": str(exc)}
        return info if isinstance(info, dict) else {"damaged": "not an object"}

    def read_info(self, run_id: str) -> dict:
        path = self.local / check_run_id(run_id) / "run.json"
        damaged = (
            f"{path} is damaged (not the JSON object a run writes); restore it from a backup, or move the folder "
            f"{path.parent} away to drop the run from the list (its checkpoints stay in {DB_NAME})"
        )
        return checked_info(self.raw_info(run_id), run_id, self.list_ids(), self.where, damaged)

    def list_ids(self) -> list[str]:
        return list_run_ids(self.run_dir)

    def write_decision(self, run_id: str, answer: dict) -> None:
        write_decision(self.run_dir, run_id, answer)

    def write_examples(self, run_id: str, rows: list[dict]) -> None:
        """Examples a run was given in memory, kept so any later process can resume it."""
        _write_json(self.folder(run_id) / "examples.json", {"examples": rows})

    def read_examples(self, run_id: str) -> list[dict] | None:
        path = self.folder(run_id) / "examples.json"
        return json.loads(path.read_text())["examples"] if path.is_file() else None

    def read_decision(self, run_id: str) -> dict | None:
        return read_decision(self.run_dir, run_id)

    def clear_decision(self, run_id: str) -> None:
        clear_decision(self.run_dir, run_id)

    def lock(self, run_id: str, doing: str):
        return run_lock(self.local, run_id, doing)

    def holder(self, run_id: str) -> str | None:
        """The process holding the run now ("pid N on HOST, DOING RUN, since T"), or None."""
        return holder_of(run_lock_path(self.local, run_id))

    def remove(self, run_id: str) -> None:
        """Drop the run from the index: its folder (run.json, a pending answer, reports)."""
        shutil.rmtree(self.folder(run_id), ignore_errors=True)

    def folder(self, run_id: str) -> Path:
        return self.local / check_run_id(run_id)


def checkpointer_url(checkpointer: str | None = None) -> str | None:
    """The checkpoint database named by the argument or ``GRADPROMPT_CHECKPOINTER``; none means the
    runs folder's SQLite file."""
    url = checkpointer or os.environ.get("GRADPROMPT_CHECKPOINTER") or None
    if url and "://" not in url:
        raise GradpromptError(
            f"checkpointer {url!r} is not a database URL: use postgresql://USER@HOST:PORT/DATABASE, or --run-dir "
            "for a local runs folder"
        )
    return url


def open_runs(run_dir: str | os.PathLike | None = None, checkpointer: str | None = None) -> Runs:
    """The place runs live: a PostgreSQL database when a URL is given, else the runs folder."""
    url = checkpointer_url(checkpointer)
    if url is None:
        return RunFolder(run_dir)
    from gradprompt.store.postgres_runs import PostgresRuns

    return PostgresRuns(url, runs_dir(run_dir))
