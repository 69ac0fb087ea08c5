"""What scaling out costs and buys on this machine: a sweep's wall time by worker count, and the
price of PostgreSQL checkpoints against the local SQLite file.

1. **Sweep wall time.** The same 4-run sweep (2 tasks x 2 seeds, tiny settings on the bundled
   model) run three ways, each from an empty runs folder and store: one after another in this
   process without Ray (the naive baseline), on Ray with 1 worker, and on Ray with 2 workers.
   With several workers the store folder is served by a local ``chroma run`` server.
2. **Checkpoint overhead.** One real run with the same settings, checkpointed to SQLite and then
   to a PostgreSQL server started here on 127.0.0.1 (fsync on, as a real server runs): every
   ``put`` and ``put_writes`` of the saver is timed, and the run's wall time is kept.

Each measurement is saved as it finishes under ``OUT/parts/``; started again, the benchmark skips
finished parts. ``OUT/results.md`` and ``OUT/results.json`` hold the table.

    python benchmarks/scale.py
    python benchmarks/scale.py --repeats 3 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL server the tests use

from gradprompt.graph.api import optimize  # noqa: E402
from gradprompt.graph.sweep import sweep  # noqa: E402

TASKS = ["builtin:compare", "builtin:arithmetic"]
SEEDS = [0, 1]
TINY = {
    "train": 3,
    "dev": 3,
    "test": 3,
    "batch_size": 2,
    "max_new_tokens": 6,
    "n_evaluate": 2,
    "top_k": 5,
    "keep_best": 3,
    "refine": False,
}
# runs long enough that the fixed costs of a worker (start, model load) are a small part
SIZES = {"tiny": TINY, "small": {**TINY, "train": 8, "dev": 16, "test": 16, "max_new_tokens": 48}}
WAYS = {
    "in-process, no Ray": {"workers": 1, "use_ray": False},
    "Ray, 1 worker": {"workers": 1, "use_ray": True},
    "Ray, 2 workers": {"workers": 2, "use_ray": True},
}


def _part(out: Path, name: str, measure: Callable[[], dict]) -> dict:
    """A finished measurement is read back; a missing one is taken and saved at once."""
    path = out / "parts" / f"{name}.json"
    if path.is_file():
        print(f"{name}: measured earlier, kept", file=sys.stderr)
        return json.loads(path.read_text())
    result = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"{name}: {json.dumps(result)[:200]}", file=sys.stderr, flush=True)
    return result


@contextmanager
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="gradprompt-scale-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_wall(way: dict, steps: int, size: dict) -> dict:
    with _scratch() as folder:
        start = time.perf_counter()
        outcomes = sweep(
            TASKS, ["smollm2"], SEEDS, name="bench", run_dir=folder / "runs", store=str(folder / "trajectory"),
            steps=steps, **way, **size,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    assert all(o.status == "finished" for o in outcomes), [o.error for o in outcomes]
    return {"seconds": round(seconds, 2), "runs": len(outcomes)}


class SaverClock:
    """Times every write a checkpointer class makes (``put`` and ``put_writes``) while installed."""

    def __init__(self, cls):
        self.cls, self.puts, self.writes = cls, [], []

    def __enter__(self):
        self.saved = self.cls.put, self.cls.put_writes

        def timed(fn, into):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    into.append(time.perf_counter() - t)

            return wrapper

        self.cls.put, self.cls.put_writes = timed(self.saved[0], self.puts), timed(self.saved[1], self.writes)
        return self

    def __exit__(self, *exc):
        self.cls.put, self.cls.put_writes = self.saved


def checkpoint_costs(backend: str, steps: int) -> dict:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from servers import local_postgres

    with _scratch() as folder:
        where: dict = {"run_dir": folder / "runs"}
        with local_postgres(durable=True) if backend == "postgres" else _nothing() as url:
            if url:
                where["checkpointer"] = url
            cls = PostgresSaver if backend == "postgres" else SqliteSaver
            with SaverClock(cls) as clock:
                start = time.perf_counter()
                result = optimize("builtin:compare", steps=steps, seed=0, store=str(folder / "t"), **where, **TINY)
                seconds = time.perf_counter() - start
    ms = [1000 * t for t in clock.puts]
    wms = [1000 * t for t in clock.writes]
    return {
        "run_seconds": round(seconds, 2),
        "checkpoints": len(ms),
        "put_ms_median": round(statistics.median(ms), 3),
        "put_ms_p90": round(sorted(ms)[int(0.9 * (len(ms) - 1))], 3),
        "writes": len(wms),
        "put_writes_ms_median": round(statistics.median(wms), 3),
        "seconds_in_checkpointing": round((sum(ms) + sum(wms)) / 1000, 3),
        "steps": result.steps,
    }


@contextmanager
def _nothing():
    yield None


def write_tables(out: Path, walls: dict[str, dict[str, list[float]]], costs: dict[str, dict], steps: int) -> None:
    lines = [
        f"Sweep of 4 runs ({len(TASKS)} tasks x {len(SEEDS)} seeds, {steps} steps each, bundled SmolLM2-135M on "
        f"this {os.cpu_count()}-core CPU), from an empty runs folder and store. Tiny: 3 pool/dev/test examples and "
        "6 reasoning tokens; small: 8 pool, 16 dev and 16 test examples and 48 reasoning tokens.",
        "",
        "| settings | how | wall time (s), median | each sweep (s) | vs in-process | 2 workers vs 1 |",
        "|---|---|---:|---|---:|---:|",
    ]
    for size, by_way in walls.items():
        base = statistics.median(by_way["in-process, no Ray"])
        one = statistics.median(by_way["Ray, 1 worker"])
        for way, times in by_way.items():
            m = statistics.median(times)
            pair = f"{one / m:.2f}x" if way == "Ray, 2 workers" else ""
            each = ", ".join(f"{t:.1f}" for t in times)
            lines.append(f"| {size} | {way} | {m:.1f} | {each} | {base / m:.2f}x | {pair} |")
    sq, pg = costs["sqlite"], costs["postgres"]
    lines += [
        "",
        f"Checkpoint writes of one run ({steps} steps, same settings), timed inside the saver:",
        "",
        "| checkpointer | checkpoints | put, median (ms) | put, p90 (ms) | put_writes, median (ms) | "
        "time in checkpoint writes (s) | run wall time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in (("SQLite file", sq), ("PostgreSQL on 127.0.0.1", pg)):
        lines.append(
            f"| {name} | {c['checkpoints']} | {c['put_ms_median']:.2f} | {c['put_ms_p90']:.2f} | "
            f"{c['put_writes_ms_median']:.2f} | {c['seconds_in_checkpointing']:.2f} | {c['run_seconds']:.1f} |"
        )
    extra = pg["put_ms_median"] - sq["put_ms_median"]
    lines += [
        "",
        f"PostgreSQL adds {extra:+.2f} ms per checkpoint (median put) against SQLite.",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"sweep_seconds": walls, "checkpoints": costs}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="sweeps per way (the median is reported); more taken earlier are kept"
    )
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, dict[str, list[float]]] = {}
    for size in args.sizes:
        taken = {path.name.split("-")[2] for path in (args.out / "parts").glob(f"sweep-{size}-*.json")}
        # the ways interleave, so a slow spell of the machine hits all of them
        for i in range(max(args.repeats, len(taken))):
            for way, w in WAYS.items():
                name = f"sweep-{size}-{i}-{way.replace(' ', '_').replace(',', '')}"
                part = _part(args.out, name, lambda w=w, size=size: sweep_wall(w, args.steps, SIZES[size]))
                walls.setdefault(size, {}).setdefault(way, []).append(part["seconds"])
    costs = {
        b: _part(args.out, f"checkpoints-{b}", lambda b=b: checkpoint_costs(b, args.steps))
        for b in ("sqlite", "postgres")
    }
    write_tables(args.out, walls, costs, args.steps)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
