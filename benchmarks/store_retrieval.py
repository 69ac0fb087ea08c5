"""How fast the trajectory answers as it grows: retrieval latency at 1,000 to 100,000 stored prompts.

A synthetic store is filled in steps (records shaped like a run's: 40 tasks, 3 models, 20 steps per
run, real metadata; their vectors are the bundled embedder's vectors of a few hundred real prompt
texts, each perturbed by noise so no two records coincide). At each size the three reads a run
makes are timed, each the median of ``--queries`` calls after warm-up, query embedding included:

- ``similar, same task``: a step's retrieval (``retrieve`` node), prompts of this task and model;
- ``similar, other tasks``: its cross-task half, every task but this one;
- ``best of a task``: a warm start's read of one task's best prompts.

The naive baseline in the same run is an exact scan: the same same-task query answered by
loading the task's records' vectors and ranking them in numpy. These reads hold the store, as a
run does for its lifetime (one client, its index in memory); the last column is the same-task
query made without a hold, which opens the folder on every call (a one-off command's read).

    python benchmarks/store_retrieval.py
    python benchmarks/store_retrieval.py --sizes 1000 10000 100000 --queries 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from gradprompt.store.chroma_client import holding  # noqa: E402
from gradprompt.store.trajectory import TrajectoryStore  # noqa: E402
from gradprompt.store.trajectory_record import TrajectoryRecord  # noqa: E402

TASKS = [f"task{i:02d}" for i in range(40)]
MODELS = ["smollm2", "qwen2.5-0.5b", "llama-3.2-1b"]
WORDS = [
    "think",
    "step",
    "by",
    "step",
    "answer",
    "the",
    "question",
    "carefully",
    "check",
    "each",
    "part",
    "first",
    "then",
    "give",
    "only",
    "final",
    "letter",
    "count",
    "compare",
    "reason",
    "about",
    "order",
    "list",
    "options",
    "explain",
    "briefly",
    "number",
    "words",
    "true",
    "false",
    "valid",
]
QUERIES = [
    "Let's think step by step.",
    "Answer the question.",
    "Check each step, then give only the final answer.",
    "Compare the options carefully before choosing a letter.",
]


def _texts(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "." for _ in range(n)]


def fill(store: TrajectoryStore, start: int, stop: int, base: np.ndarray, rng: random.Random) -> None:
    """Add records ``start..stop-1``; a record's vector is a base text's vector plus noise."""
    batch = 5000
    texts = _texts(len(base), rng)
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        picks = [rng.randrange(len(base)) for _ in range(lo, hi)]
        noise = np.random.default_rng(lo).normal(0, 0.05, size=(hi - lo, base.shape[1]))
        vectors = base[picks] + noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = []
        for i, pick in zip(range(lo, hi), picks, strict=True):
            run = i // 200
            records.append(
                TrajectoryRecord(
                    text=f"{texts[pick]} ({i})",
                    prompt_ids=[pick, i % 50000],
                    task=TASKS[run % len(TASKS)],
                    model=MODELS[run % len(MODELS)],
                    run_id=f"run{run}",
                    step=(i // 10) % 20,
                    source="gradient",
                    score=rng.random(),
                    accuracy=rng.random(),
                    dev_accuracy=rng.random() if i % 10 == 0 else None,
                    examples=50,
                    splits="synthetic",
                    data="synthetic",
                    version="synthetic",
                    recorded=time.time(),
                )
            )
        store.add(records, embeddings=vectors.tolist())


def exact_scan(store: TrajectoryStore, text: str, task: str, model: str, k: int) -> list[str]:
    """The naive way: fetch every record of the task and rank all of them by cosine."""
    query = np.array(store.embedder.embed([text])[0])
    got = store.records_with_embeddings(task=task, model=model)
    vectors = np.asarray([v for _, v in got])
    order = np.argsort(-(vectors @ query))[:k]
    return [got[i][0].text for i in order]


def timed(fn, queries: int) -> dict:
    for i in range(3):
        fn(i)
    times = []
    for i in range(queries):
        start = time.perf_counter()
        fn(i)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2)}


def measure(store: TrajectoryStore, queries: int, stored: int) -> dict:
    def task_of(i: int) -> tuple[str, str]:  # a task and model some stored run has
        run = (7 * i + 3) % max(1, stored // 200)
        return TASKS[run % len(TASKS)], MODELS[run % len(MODELS)]

    def same(i: int):
        task, model = task_of(i)
        return store.similar(QUERIES[i % len(QUERIES)], model=model, k=5, task=task)

    def other(i: int):
        task, model = task_of(i)
        return store.similar(QUERIES[i % len(QUERIES)], model=model, k=5, exclude_task=task)

    def best(i: int):
        task, model = task_of(i)
        return store.best(task=task, model=model, k=2)

    def scan(i: int):
        task, model = task_of(i)
        return exact_scan(store, QUERIES[i % len(QUERIES)], task, model, 5)

    with holding(store.location):  # as a run reads: it holds its store, one client for the run
        assert same(0) and other(0) and best(0)
        reads = {
            "similar, same task": timed(same, queries),
            "similar, other tasks": timed(other, queries),
            "best of a task": timed(best, queries),
            "exact scan of the task (naive)": timed(scan, queries),
        }
    reads["similar, same task, folder opened per call"] = timed(same, queries)
    return reads


def write_tables(out: Path, rows: dict[int, dict]) -> None:
    reads = list(next(iter(rows.values()))["reads"])
    lines = [
        f"Retrieval from a synthetic trajectory folder on this {os.cpu_count()}-core CPU (40 tasks, 3 models; "
        "median and p90 of repeated calls, query embedding by the bundled embedder included):",
        "",
        "| stored prompts | " + " | ".join(f"{r}, median (p90) ms" for r in reads) + " | size on disk (MiB) |",
        "|---:|" + "---:|" * (len(reads) + 1),
    ]
    for n, row in sorted(rows.items()):
        cells = [f"{row['reads'][r]['median_ms']:.1f} ({row['reads'][r]['p90_ms']:.1f})" for r in reads]
        lines.append(f"| {n:,} | " + " | ".join(cells) + f" | {row['size_on_disk'] / 2**20:.0f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "store_retrieval")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=30, help="timed calls per read and size")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="gradprompt-retrieval-"))
    try:
        store = TrajectoryStore(folder / "store")
        base = np.asarray(store.embedder.embed(_texts(400, random.Random(1)) + QUERIES))
        rows: dict[int, dict] = {}
        have = 0
        for n in sorted(args.sizes):
            start = time.perf_counter()
            fill(store, have, n, base, rng)
            fill_seconds = time.perf_counter() - start
            have = n
            rows[n] = {
                "fill_seconds": round(fill_seconds, 1),
                "reads": measure(store, args.queries, n),
                "size_on_disk": store.stats()["size_on_disk"],
            }
            print(f"{n}: {json.dumps(rows[n])}", file=sys.stderr, flush=True)
        write_tables(args.out, rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
