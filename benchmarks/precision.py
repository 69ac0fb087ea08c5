"""What bfloat16 costs in answers and buys in time on a CPU, measured on the same work.

A CPU with native bfloat16 (AVX512-BF16, AMX) runs the model's matrix products about twice as fast
in bfloat16 as in float32. Whether that is worth taking depends on the answers: the precision moves
the logits' last digits, and a prompt search lives on near-ties. For every task and a fixed set of
prompts (none, "Let's think step by step.", the generic initial prompt, the task's plain instruction
and the instruction that names its answer format) this scores the same test examples under both
precisions and reports

- accuracy under each, with its 95% Wilson interval, and the paired difference bfloat16 minus
  float32 (Agresti-Min interval, exact McNemar p);
- the share of (prompt, example) rows whose answer is the same, and the largest change of the gold
  answer's log-probability;
- the seconds each precision took for the whole prompt set: medians over ``--repeats`` rounds that
  alternate which precision goes first, so a machine slowing down mid-run hurts neither.

A whole search in bfloat16, with its final test accuracy, is timed by ``run_cost.py --dtype
bfloat16``. Each finished task is saved as ``OUT/tasks/NAME.json``; run the same command again to
resume. The summary is ``OUT/results.md`` and ``OUT/results.json``.

    python benchmarks/precision.py                              # the three classification tasks, direct
    python benchmarks/precision.py --max-new-tokens 32 --test 64 --out benchmarks/results/precision-reasoning
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import (  # noqa: E402
    DEFAULT_INITIAL,
    STEP_BY_STEP,
    TASK_INSTRUCTIONS,
    default_data_dir,
    resumable_rows,
    task_specs,
)

from gradprompt.errors import GradpromptError  # noqa: E402
from gradprompt.graph.api import make_settings  # noqa: E402
from gradprompt.nodes.decisions import paired_gain  # noqa: E402
from gradprompt.nodes.greater import rollout  # noqa: E402
from gradprompt.nodes.session import session  # noqa: E402
from gradprompt.nodes.tasks.confidence import wilson_interval  # noqa: E402
from gradprompt.nodes.tasks.readout import readout_of  # noqa: E402

DTYPES = ("float32", "bfloat16")
DEFAULT_TASKS = ("fsc/sst-2", "fsc/trec", "fsc/agnews")


def _prompts(name: str, fmt) -> dict[str, str]:
    prompts = {"empty": "", "step_by_step": STEP_BY_STEP, "initial": DEFAULT_INITIAL}
    if name in TASK_INSTRUCTIONS:
        prompts["task_instruction"] = TASK_INSTRUCTIONS[name]
    if fmt.instruction():
        prompts["answer_format"] = fmt.instruction()
    return prompts


def _accuracy(correct: list[bool]) -> dict:
    low, high = wilson_interval(sum(correct), len(correct))
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "ci95": [round(low, 4), round(high, 4)]}


def measure_task(name: str, spec: str, args) -> dict:
    sessions = {
        dt: session(
            make_settings(
                spec,
                model=args.model,
                seed=args.seed,
                train=args.train,
                dev=args.dev,
                test=args.test,
                dtype=dt,
                trajectory=False,
                max_new_tokens=args.max_new_tokens,
            )
        )
        for dt in DTYPES
    }
    first = sessions["float32"]
    fmt, test = first.task.answer_format, first.splits.test
    readout = readout_of(fmt, "choice", args.max_new_tokens)
    prompts = _prompts(name, fmt)
    ids = {dt: [tuple(s.rt.encode_prompt(t)) for t in prompts.values()] for dt, s in sessions.items()}
    seconds: dict[str, list[float]] = {dt: [] for dt in DTYPES}
    results: dict = {}
    for round_ in range(args.repeats):
        for dt in DTYPES if round_ % 2 == 0 else DTYPES[::-1]:
            began = time.perf_counter()
            results[dt] = rollout(sessions[dt].rt, readout, test, ids[dt], args.max_new_tokens)
            seconds[dt].append(time.perf_counter() - began)
    row: dict = {"task": name, "test_examples": len(test), "prompts": {}, "examples": []}
    same_rows = 0
    for i, (key, text) in enumerate(prompts.items()):
        full, half = results["float32"][i], results["bfloat16"][i]
        same = sum(a == b for a, b in zip(full.answers, half.answers, strict=True))
        same_rows += same
        shift = max(abs(a - b) for a, b in zip(full.gold_logprobs, half.gold_logprobs, strict=True))
        row["prompts"][key] = {
            "text": text,
            "float32": _accuracy(full.correct),
            "bfloat16": _accuracy(half.correct),
            "difference": paired_gain(half.correct, full.correct).to_json(),
            "same_answer": same / len(test),
            "max_gold_logprob_change": round(shift, 4),
        }
        for ex, a, b in list(zip(test, full.answers, half.answers, strict=True))[:2]:
            row["examples"].append(
                {"prompt": text, "question": ex.question[:200], "float32": a, "bfloat16": b, "gold": ex.answer}
            )
    row["same_answer"] = same_rows / (len(test) * len(prompts))
    row["seconds"] = {dt: round(statistics.median(s), 3) for dt, s in seconds.items()}
    row["speedup"] = round(row["seconds"]["float32"] / row["seconds"]["bfloat16"], 2)
    return row


def _cell(s: dict) -> str:
    return f"{s['accuracy']:.3f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def write_summary(out: Path, rows: list[dict], args) -> None:
    settings = vars(args) | {"out": str(args.out), "data": str(args.data)}
    (out / "results.json").write_text(json.dumps({"settings": settings, "tasks": rows}, indent=2))
    lines = [
        "| task | prompt | float32 | bfloat16 | bfloat16 - float32 | same answer | max gold log-prob change |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for row in rows:
        for key, p in row["prompts"].items():
            d = p["difference"]
            lines.append(
                f"| {row['task']} | {key} | {_cell(p['float32'])} | {_cell(p['bfloat16'])} | "
                f"{d['gain']:+.3f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] p={d['p_value']:.2f} | "
                f"{p['same_answer']:.3f} | {p['max_gold_logprob_change']:.3f} |"
            )
    lines += [
        "",
        "| task | rows | float32 (s) | bfloat16 (s) | speedup | same answer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        n = row["test_examples"] * len(row["prompts"])
        s = row["seconds"]
        lines.append(
            f"| {row['task']} | {n} | {s['float32']:.1f} | {s['bfloat16']:.1f} | {row['speedup']:.2f}x | "
            f"{row['same_answer']:.3f} |"
        )
    mode = "direct answers" if args.max_new_tokens == 0 else f"{args.max_new_tokens} reasoning tokens"
    lines += [
        "",
        f"Model {args.model}, seed {args.seed}, {mode}, choice readout, the accuracy benchmark's test split "
        f"({args.train}/{args.dev}/{args.test} train/dev/test). Seconds are medians of {args.repeats} rounds "
        "alternating which precision runs first.",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder (default ../shared/data)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="fsc/NAME, bbh/NAME or task specs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=50)
    parser.add_argument("--dev", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=0, help="reasoning tokens (0: direct answers)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per task (median)")
    args = parser.parse_args(argv)
    try:
        specs = task_specs(args.data or default_data_dir(), args.tasks)

        def done(rows: list[dict]) -> None:
            row = rows[-1]
            print(
                f"{row['task']}: same answer {row['same_answer']:.3f}, bfloat16 {row['speedup']:.2f}x", file=sys.stderr
            )
            write_summary(args.out, rows, args)

        rows = resumable_rows(args.out, specs, lambda name, spec: measure_task(name, spec, args), done)
        write_summary(args.out, rows, args)
    except GradpromptError as exc:
        print(f"precision benchmark: {exc}", file=sys.stderr)
        return 2
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
