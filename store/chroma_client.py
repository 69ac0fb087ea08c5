"""Opening the trajectory's Chroma: an embedded folder or a server, and holding a folder for a
process (an embedded folder is for one process at a time; one client per hold)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import store_folder_lock
from gradprompt.store.paths import data_dir


def chroma_client(location: str):
    """A Chroma client for a folder (embedded) or an ``http://HOST:PORT`` server."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if is_server(location):
        url = urlparse(location)
        if not url.hostname or not url.port:
            raise GradpromptError(f"store address {location!r} needs a host and a port, e.g. http://127.0.0.1:8000")
        return chromadb.HttpClient(host=url.hostname, port=url.port, ssl=url.scheme == "https", settings=settings)
    Path(location).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=location, settings=settings)


def default_location() -> str:
    return str(data_dir() / "trajectory")


def is_server(location: str) -> bool:
    return location.startswith(("http://", "https://"))


_HELD: dict[str, list] = {}  # folder -> [open client or None, how many holds are open]
_HELD_LOCK = threading.Lock()


@contextmanager
def holding(location: str | None) -> Iterator[None]:
    """Hold a store folder for the block (an embedded folder is for one process at a time); a
    server needs no holding. While a folder is held (a run holds its store for its lifetime) every
    operation on it shares one client, opened on first use and closed when the outermost hold
    ends, so records other processes wrote before the hold began are seen."""
    location = location or default_location()
    if is_server(location):
        yield
        return
    with store_folder_lock(Path(location)):
        with _HELD_LOCK:
            _HELD.setdefault(location, [None, 0])[1] += 1
        try:
            yield
        finally:
            with _HELD_LOCK:
                entry = _HELD[location]
                entry[1] -= 1
                if entry[1] == 0:
                    del _HELD[location]
                    if entry[0] is not None:
                        entry[0].close()


def held_client(location: str):
    """The client shared by the current hold of a folder (opened now if it is the first use)."""
    with _HELD_LOCK:
        entry = _HELD[location]
        if entry[0] is None:
            entry[0] = chroma_client(location)
        return entry[0]
