"""Runs kept in PostgreSQL, so that every machine of a cluster sees, resumes and reports every run.

Checkpoints go to LangGraph's ``PostgresSaver`` and rollout caches to its ``PostgresStore``; the
run index (each run's settings and origin, and a person's pending answer) is the table
``gradprompt_runs`` in the same database, so ``runs list`` and ``runs pending`` read one place.
The lock that keeps two processes off one run is a session-level advisory lock: the server drops
it when the holding connection ends, so a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import check_run_id, held_once
from gradprompt.store.runs import checked_info

SCHEMES = ("postgresql", "postgres")
_SETUP_LOCK = 0x67726164  # one advisory key for the schema set-up of every gradprompt database

_INDEX_DDL = """
CREATE TABLE IF NOT EXISTS gradprompt_runs (
    run_id TEXT PRIMARY KEY,
    info JSONB NOT NULL,
    decision JSONB,
    examples JSONB,
    updated TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
# an index made before runs could keep in-memory examples gets the column once
_HAS_EXAMPLES = (
    "SELECT 1 FROM information_schema.columns WHERE table_name = 'gradprompt_runs' AND column_name = 'examples'"
)
_ADD_EXAMPLES = "ALTER TABLE gradprompt_runs ADD COLUMN IF NOT EXISTS examples JSONB"
_checked: set[str] = set()


def shown(url: str) -> str:
    """The URL without its password, for messages and listings."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or not parts.path.strip("/"):
        raise GradpromptError(
            f"checkpointer {shown(url)!r} is not a PostgreSQL URL: use postgresql://USER@HOST:PORT/DATABASE "
            "(or leave --checkpointer and GRADPROMPT_CHECKPOINTER unset for the local SQLite file)"
        )
    try:
        _ = parts.port
    except ValueError:
        raise GradpromptError(f"checkpointer {shown(url)!r} has an invalid port: use e.g. :5432") from None
    return url


def _lock_key(run_id: str) -> int:
    """A signed 64-bit advisory-lock key for the run."""
    return int.from_bytes(hashlib.sha1(f"gradprompt run {run_id}".encode()).digest()[:8], "big", signed=True)


class PostgresRuns:
    """Runs in one PostgreSQL database; ``local`` is the folder a run's report is written to."""

    def __init__(self, url: str, local: Path):
        self.url = check_url(url)
        self.local = local

    @property
    def where(self) -> str:
        return shown(self.url)

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, **kwargs):
        """A psycopg connection; a database that is down or refuses us is one clear error."""
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(
                self.url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10, **kwargs
            )
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise GradpromptError(
                f"cannot open the checkpoint database {self.where} ({first}): start the server or fix the URL "
                "given by --checkpointer or GRADPROMPT_CHECKPOINTER"
            ) from None

    @contextmanager
    def _conn(self) -> Iterator:
        conn = self._connect()
        try:
            with conn:
                conn.execute(_INDEX_DDL)
                if self.url not in _checked:
                    if conn.execute(_HAS_EXAMPLES).fetchone() is None:
                        conn.execute(_ADD_EXAMPLES)
                    _checked.add(self.url)
                yield conn
        except GradpromptError:
            raise
        except Exception as exc:  # psycopg.Error mid-operation: the server went away
            import psycopg

            if isinstance(exc, psycopg.OperationalError):
                raise GradpromptError(
                    f"lost the checkpoint database {self.where} ({str(exc).strip()[:160]}): check the server, "
                    "then resume the run"
                ) from None
            raise

    @contextmanager
    def persistence(self) -> Iterator[tuple]:
        """``PostgresSaver`` checkpoints and a ``PostgresStore`` rollout cache, for the graph layer."""
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.store.postgres import PostgresStore

        with self._conn() as saver_conn, self._conn() as store_conn:
            saver, store = PostgresSaver(saver_conn), PostgresStore(store_conn)
            # LangGraph's migrations are not safe against two processes starting at once
            saver_conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
            try:
                saver.setup()
                store.setup()
            finally:
                saver_conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
            yield saver, store

    @contextmanager
    def rollout_store(self) -> Iterator:
        from langgraph.store.postgres import PostgresStore

        with self._conn() as conn:
            store = PostgresStore(conn)
            conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
            try:
                store.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
            yield store

    # -- the run index -------------------------------------------------------------------------
    def write_info(self, run_id: str, info: dict) -> Path:
        check_run_id(run_id)
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO gradprompt_runs (run_id, info) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET info = EXCLUDED.info, updated = now()",
                (run_id, json.dumps(info)),
            )
        return self.folder(run_id)

    def raw_info(self, run_id: str) -> dict | None:
        with self._conn() as conn:
            row = conn.execute("SELECT info FROM gradprompt_runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else row["info"]

    def read_info(self, run_id: str) -> dict:
        damaged = (
            f"the index entry of run {run_id} in {self.where} is damaged (not what a run writes); restore the row of "
            "gradprompt_runs from a backup, or delete it to drop the run from the list"
        )
        return checked_info(self.raw_info(check_run_id(run_id)), run_id, self.list_ids(), self.where, damaged)

    def list_ids(self) -> list[str]:
        with self._conn() as conn:
            return [r["run_id"] for r in conn.execute("SELECT run_id FROM gradprompt_runs ORDER BY run_id")]

    def write_decision(self, run_id: str, answer: dict) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE gradprompt_runs SET decision = %s, updated = now() WHERE run_id = %s",
                (json.dumps(answer), run_id),
            )

    def read_decision(self, run_id: str) -> dict | None:
        with self._conn() as conn:
            row = conn.execute("SELECT decision FROM gradprompt_runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else row["decision"]

    def write_examples(self, run_id: str, rows: list[dict]) -> None:
        """Examples a run was given in memory, kept so any machine can resume it."""
        with self._conn() as conn:
            conn.execute(
                "UPDATE gradprompt_runs SET examples = %s WHERE run_id = %s", (json.dumps(rows), check_run_id(run_id))
            )

    def read_examples(self, run_id: str) -> list[dict] | None:
        with self._conn() as conn:
            row = conn.execute("SELECT examples FROM gradprompt_runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else row["examples"]

    def clear_decision(self, run_id: str) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE gradprompt_runs SET decision = NULL WHERE run_id = %s", (run_id,))

    def folder(self, run_id: str) -> Path:
        return self.local / check_run_id(run_id)

    # -- locks ---------------------------------------------------------------------------------
    def lock(self, run_id: str, doing: str):
        """Hold run ``run_id`` for the block (re-entrant within this process); another holder
        anywhere on the cluster makes this one clear refusal naming who holds it."""
        check_run_id(run_id)
        key = _lock_key(run_id)

        def acquire():
            holder = f"gradprompt pid {os.getpid()} on {socket.gethostname()}, {doing} {run_id}"[:63]
            conn = self._connect(application_name=holder)
            if not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,)).fetchone()["ok"]:
                who = self._holder(conn, key)
                conn.close()
                raise GradpromptError(
                    f"run {run_id} is in use by another process; wait for it to finish or stop it (Ctrl-C), "
                    f"then try again (held by {who})"
                )
            return conn

        # ending the session releases the advisory lock
        return held_once(("postgres", self.url, run_id), acquire, lambda conn: conn.close())

    def holder(self, run_id: str) -> str | None:
        """The process holding the run now ("pid N on HOST, DOING RUN, since T"), or None."""
        with self._conn() as conn:
            row = self._holding(conn, _lock_key(check_run_id(run_id)))
        if row is None:
            return None
        who = (row["who"] or "another process").removeprefix("gradprompt ")
        return f"{who}, since {row['since']:%Y-%m-%d %H:%M:%S}"

    def remove(self, run_id: str) -> None:
        """Drop the run from the index (its row, with a pending answer) and its local report folder."""
        import shutil

        with self._conn() as conn:
            conn.execute("DELETE FROM gradprompt_runs WHERE run_id = %s", (check_run_id(run_id),))
        shutil.rmtree(self.folder(run_id), ignore_errors=True)

    @staticmethod
    def _holding(conn, key: int):
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        return conn.execute(
            "SELECT a.application_name AS who, a.backend_start AS since FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.objid::bigint = %s "
            "AND l.objsubid = 1 AND l.granted",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()

    @classmethod
    def _holder(cls, conn, key: int) -> str:
        row = cls._holding(conn, key)
        return (row and row["who"]) or "another process"
