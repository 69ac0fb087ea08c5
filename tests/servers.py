"""A throwaway PostgreSQL server on 127.0.0.1, for the tests and the scale benchmark."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_next_port: list[int] = []


def free_port(host: str = "127.0.0.1") -> int:
    """A port for a server the tests start, from a block of 1000 per pytest-xdist worker below the
    kernel's ephemeral range (32768 up on Linux): neither another worker's servers nor any
    outgoing connection (which gets an ephemeral port) can take it between this pick and the
    server's own bind. Ports already bound are passed over."""
    import socket

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base = 20000 + 1000 * (int(worker.removeprefix("gw") or 0) % 12)
    if not _next_port:
        _next_port.append(base)
    for _ in range(1000):
        port = base + (_next_port[0] - base) % 1000
        _next_port[0] = port + 1
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {base}-{base + 999}")


def postgres_bin() -> Path | None:
    """A folder with PostgreSQL's ``initdb`` and ``postgres``: on PATH, Debian's
    ``/usr/lib/postgresql/N/bin``, or the binaries the PyPI package ``pgserver`` ships."""
    found = [Path(p).resolve().parent for p in (shutil.which("initdb"),) if p]
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    try:
        import pgserver  # type: ignore[import-not-found]

        found.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    for folder in found:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _unprivileged() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` (or ``nobody``) user then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as")


@contextmanager
def local_postgres(durable: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL cluster listening on 127.0.0.1 only, with a database ``gradprompt``;
    yields its URL and removes everything afterwards. ``durable=False`` turns fsync off (tests)."""
    import psycopg

    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (install Debian's postgresql or `pip install pgserver`)")
    folder = Path(tempfile.mkdtemp(prefix="gradprompt-pg-", dir="/tmp"))
    ids = _unprivileged()
    as_user = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
    if ids:
        os.chown(folder, *ids)
    data = folder / "data"
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "gradprompt", "--auth=trust", "--encoding=UTF8"],
        check=True,
        capture_output=True,
        **as_user,
    )
    port = free_port()
    options = ["-c", "fsync=off", "-c", "synchronous_commit=off"] if not durable else []
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder), *options],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "server.log", "wb"),  # noqa: SIM115 (the server owns it for its life)
        **as_user,
    )
    base = f"postgresql://gradprompt@127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(folder / 'server.log').read_text()[-500:]}")
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=2) as conn:
                    conn.execute("CREATE DATABASE gradprompt")
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield f"{base}/gradprompt"
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions, then the server
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
