"""Removing runs: their checkpoints, the rollout-cache rows no other run uses, and their folder or
index entry; trajectory records only on request (other runs learn from them).

Every run named is held while it is removed, so a run another process drives or answers is refused,
and nothing is removed unless all of them could be held. The index entry goes last: a removal
cut short leaves a run that is still listed (and can be removed again), never orphaned rows.
"""

from __future__ import annotations

from contextlib import ExitStack

from langgraph.store.base import PutOp

from gradprompt.errors import GradpromptError
from gradprompt.graph.threads import config
from gradprompt.nodes.settings import RunSettings
from gradprompt.store.checkpoints import open_runs

_PAGE = 1000


def _namespace(runs, run_id: str, info: dict) -> tuple[str, ...] | None:
    """The rollout-cache namespace of a run (None when its task data can no longer be read)."""
    from gradprompt.graph.run_inputs import with_run_inputs
    from gradprompt.nodes.session import rollout_namespace

    try:
        with_run_inputs(runs, run_id, info["settings"])
        return rollout_namespace(RunSettings.model_validate(info["settings"]))
    except Exception:  # a moved data file, settings from another version: the namespace is unknown
        return None


def _cache_keys(store, namespace: tuple[str, ...]) -> list[str]:
    keys, offset = [], 0
    while True:
        page = store.search(namespace, limit=_PAGE, offset=offset)
        keys += [item.key for item in page if tuple(item.namespace) == namespace]
        if len(page) < _PAGE:
            return keys
        offset += _PAGE


def _records(settings: dict, run_id: str, dry_run: bool) -> int:
    if not settings.get("trajectory", True):
        return 0
    from gradprompt.store.trajectory import open_store

    return open_store(settings.get("store"), settings.get("embeddings", "minilm")).prune(
        run_id=run_id, dry_run=dry_run
    )["matched"]


def remove_runs(
    run_ids: list[str],
    *,
    dry_run: bool = False,
    store_records: bool = False,
    run_dir=None,
    checkpointer: str | None = None,
) -> list[dict]:
    """Remove runs (or, with ``dry_run``, only count what would go). Rollout-cache rows are shared
    by runs whose results cannot differ (same model, settings and readout): they are removed only
    when no remaining run uses them. ``store_records`` also deletes the runs' trajectory records."""
    if not run_ids:
        raise GradpromptError("name at least one run to remove (see `gradprompt runs list`)")
    runs = open_runs(run_dir, checkpointer)
    infos = {run_id: runs.read_info(run_id) for run_id in dict.fromkeys(run_ids)}  # unknown ids fail here
    spaces = {run_id: _namespace(runs, run_id, info) for run_id, info in infos.items()}
    shared: dict[tuple[str, ...], list[str]] = {}
    unreadable: list[str] = []
    for other in runs.list_ids():
        if other in infos:
            continue
        try:
            space = _namespace(runs, other, runs.read_info(other))
        except GradpromptError:
            space = None
        if space is None:
            unreadable.append(other)
        else:
            shared.setdefault(space, []).append(other)
    out = []
    with ExitStack() as held:
        for run_id in infos:
            held.enter_context(runs.lock(run_id, "remove"))
        with runs.persistence() as (saver, store):
            for run_id, info in infos.items():
                space = spaces[run_id]
                checkpoints = sum(1 for _ in saver.list(config(run_id)))
                keys: list[str] = []
                kept = ""
                if space is None:
                    kept = "its task data cannot be read, so the cache rows it used are unknown"
                elif shared.get(space):
                    kept = f"shared with {', '.join(shared[space][:3])}"
                elif unreadable:
                    kept = f"{', '.join(unreadable[:3])} may use them (task data unreadable)"
                else:
                    keys = _cache_keys(store, space)
                records = _records(info["settings"], run_id, dry_run) if store_records else 0
                if not dry_run:
                    for start in range(0, len(keys), _PAGE):
                        store.batch([PutOp(space, key, None) for key in keys[start : start + _PAGE]])
                    saver.delete_thread(run_id)
                    runs.remove(run_id)
                out.append(
                    {
                        "run_id": run_id,
                        "removed": not dry_run,
                        "checkpoints": checkpoints,
                        "cache_rows": len(keys),
                        "cache_kept": kept,
                        "trajectory_records": records,
                        "folder": str(runs.folder(run_id)),
                    }
                )
    return out
