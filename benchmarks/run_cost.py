"""What a whole direct-answer run costs: wall time of `optimize` from the first step to the final
test score, and how it grows with the selection pool and with the candidates raced per step.

Every configuration runs in this process after one warm-up run (so no row pays the model load),
each in a fresh runs folder and trajectory store (so no row reads another's rollout cache). Rows
are appended to ``OUT/run_cost.jsonl`` as they finish, and a rerun skips the configurations
already there, so an interrupted benchmark resumes where it stopped.

    python benchmarks/run_cost.py                                # the aim row and both sweeps
    python benchmarks/run_cost.py --task jsonl:PATH --steps 20 --sweep-steps 5
    python benchmarks/run_cost.py --dtype bfloat16 --out OUT      # CPUs with bf16 instructions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradprompt.graph.api import optimize  # noqa: E402

NODES = ("retrieve", "reason", "propose", "refine", "evaluate", "select", "approve")


def one_run(args, tmp: Path, name: str, train: int, candidates: int, steps: int) -> dict:
    """One run of ``steps`` steps; seconds from the end of ``prepare`` to the end, split by node."""
    marks: dict[str, float] = {}

    def on_update(node: str, update: dict, settings: dict) -> None:
        marks.setdefault(node, time.perf_counter())
        marks[f"{node}-last"] = time.perf_counter()

    start = time.perf_counter()
    result = optimize(
        args.task,
        steps=steps,
        train=train,
        dev=args.dev,
        test=args.test,
        max_new_tokens=0,
        n_evaluate=candidates,
        initial_prompt=args.initial_prompt,
        dtype=args.dtype,
        run_dir=tmp / f"runs-{name}",
        store=str(tmp / f"store-{name}"),
        on_update=on_update,
    )
    end = time.perf_counter()
    prepared = marks.get("prepare", start)
    last_step = marks.get("advance-last", prepared)
    nodes = {n: round(sum(h.get("timings", {}).get(n, 0.0) for h in result.history), 2) for n in NODES}
    return {
        "name": name,
        "task": args.task,
        "steps": result.steps,
        "train": train,
        "dev": args.dev,
        "test": args.test,
        "candidates": candidates,
        "seconds": round(end - start, 1),
        "prepare_seconds": round(prepared - start, 1),
        "steps_seconds": round(last_step - prepared, 1),
        "final_seconds": round(end - last_step, 1),
        "per_step_seconds": round((last_step - prepared) / max(result.steps, 1), 2),
        "nodes": nodes,
        "initial_test": result.scores["baseline"]["test"],
        "final_test": result.scores["best"]["test"],
        "kept_initial": result.kept_initial,
        "final_prompt": result.best_prompt,
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| row | pool | candidates | steps | whole run (s) | baselines (s) | per step (s) | final dev + test (s) | "
        "test initial -> final |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['train']} | {r['candidates']} | {r['steps']} | {r['seconds']:.0f} | "
            f"{r['prepare_seconds']:.0f} | {r['per_step_seconds']:.1f} | {r['final_seconds']:.0f} | "
            f"{r['initial_test']:.3f} -> {r['final_test']:.3f} |"
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=f"jsonl:{ROOT.parent / 'shared' / 'data' / 'fsc' / 'sst-2.jsonl'}")
    parser.add_argument("--initial-prompt", default="Classify the sentiment of the review.")
    parser.add_argument("--steps", type=int, default=20, help="steps of the aim row")
    parser.add_argument("--sweep-steps", type=int, default=5, help="steps of each sweep row")
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--pools", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--candidates", type=int, nargs="+", default=[3, 6, 12])
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16 (default: float32 on a CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "run_cost")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    done_path = args.out / "run_cost.jsonl"
    done = (
        {json.loads(line)["name"]: json.loads(line) for line in done_path.read_text().splitlines()}
        if done_path.exists()
        else {}
    )
    plan = [("aim", 50, 6, args.steps)]
    plan += [(f"pool {p}", p, 6, args.sweep_steps) for p in args.pools]
    plan += [(f"candidates {c}", 50, c, args.sweep_steps) for c in args.candidates if c != 6]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if any(name not in done for name, *_ in plan):
            one_run(args, tmp, "warm-up", 8, 2, 1)  # model load and first-call costs
        for name, pool, candidates, steps in plan:
            if name in done:
                continue
            row = one_run(args, tmp, name.replace(" ", "-"), pool, candidates, steps)
            row["name"] = name
            done[name] = row
            with done_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(
                f"{name}: {row['seconds']:.0f} s ({row['per_step_seconds']:.1f} s a step)", file=sys.stderr, flush=True
            )
    rows = [done[name] for name, *_ in plan]
    lines = [
        f"Direct answers on `{Path(args.task.split(':', 1)[1]).name}`, initial prompt {args.initial_prompt!r}, "
        f"dev {args.dev}, test {args.test}, dtype {args.dtype}, every other setting at its default; one run per row "
        "on this machine.",
        "",
        *table(rows),
    ]
    (args.out / "run_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
