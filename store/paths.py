"""User-level folders, overridable by environment variables so tests and CI stay hermetic."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Folder for converted model weights and other rebuildable artefacts.

    ``GRADPROMPT_CACHE_DIR`` wins, then ``XDG_CACHE_HOME/gradprompt``, then ``~/.cache/gradprompt``.
    """
    env = os.environ.get("GRADPROMPT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "gradprompt"


def data_dir() -> Path:
    """Folder for state that is not rebuildable (runs, the trajectory store).

    ``GRADPROMPT_HOME`` wins, then ``XDG_DATA_HOME/gradprompt``, then ``~/.local/share/gradprompt``.
    """
    env = os.environ.get("GRADPROMPT_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "gradprompt"
