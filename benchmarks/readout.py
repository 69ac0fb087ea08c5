"""How the answer is read, measured alone: test accuracy of fixed prompts under the two readouts.

For every task and three prompts (none, "Let's think step by step." and the accuracy benchmark's
initial prompt) it scores the same test examples, with the same greedy reasoning, under

- ``generate``: the model writes after an extractor that lists the options, and the text is parsed;
- ``choice``: the allowed answer with the highest log-probability after the extractor (closed sets;
  integers and free text are generated under both, so the two columns agree there);

and, without any reasoning (direct answers), under both again. Every accuracy carries its 95%
Wilson interval. Per task it also counts how often each option is predicted under ``choice`` against
how often it is gold, and compares extractor wordings for the choice readout on the same
reasoning: options not named (the one used), named in the data's order, and named in reverse
order, so that an option winning by its place in the extractor shows up.

The reasoning is decoded once per (prompt, example); the other readouts re-read it as a draft that
decoding confirms in one prefill, so they cost a forward each, not a decode. Each finished task is
saved as ``OUT/tasks/NAME.json``; run the same command again to resume. The summary is
``OUT/results.md`` and ``OUT/results.json``.

    python benchmarks/readout.py                          # all tasks in ../shared/data
    python benchmarks/readout.py --tasks fsc/sst-2 bbh/navigate --test 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import DEFAULT_INITIAL, STEP_BY_STEP, default_data_dir, resumable_rows, task_specs  # noqa: E402

from gradprompt.errors import GradpromptError  # noqa: E402
from gradprompt.graph.api import make_settings  # noqa: E402
from gradprompt.nodes.greater import rollout  # noqa: E402
from gradprompt.nodes.session import session  # noqa: E402
from gradprompt.nodes.tasks.answer_types import AnswerKind, question_letters  # noqa: E402
from gradprompt.nodes.tasks.confidence import wilson_interval  # noqa: E402
from gradprompt.nodes.tasks.readout import Readout, ReadoutMode  # noqa: E402

PROMPTS = {"empty": "", "step_by_step": STEP_BY_STEP, "initial": DEFAULT_INITIAL}
READOUTS = ("generate", "choice", "direct_generate", "direct_choice")
WORDINGS = ("unnamed", "named", "named_reversed")


@dataclass(frozen=True)
class NamedOptions(Readout):
    """The choice readout with an extractor that names the options, in the data's order or
    reversed: what the readout would suffer if it listed them."""

    order: str = "named"

    def extractor(self, question: str) -> str:
        if self.fmt.kind is AnswerKind.LETTER:
            letters = question_letters(question) or ("A", "B")
            if self.order == "named_reversed":
                letters = letters[::-1]
            return f"\nTherefore, among ({letters[0]}) through ({letters[-1]}), the answer is ("
        labels = self.fmt.labels[::-1] if self.order == "named_reversed" else self.fmt.labels
        return f"\nTherefore, the final answer ({', '.join(labels[:-1])} or {labels[-1]}) is"


def accuracy(correct: list[bool]) -> dict:
    n, k = len(correct), sum(correct)
    low, high = wilson_interval(k, n)
    return {"accuracy": k / n, "correct": k, "n": n, "ci95": [round(low, 4), round(high, 4)]}


def measure_task(name: str, spec: str, args) -> dict:
    settings = make_settings(
        spec, model=args.model, seed=args.seed, train=args.train, dev=args.dev, test=args.test, trajectory=False
    )
    sess = session(settings)
    rt, fmt, test = sess.rt, sess.task.answer_format, sess.splits.test
    start = time.perf_counter()
    row: dict = {"task": name, "answer_type": str(fmt.kind), "test_examples": len(test), "scores": {}}
    gold = Counter(fmt.normalize_gold(e.answer) for e in test)
    row["gold_counts"] = dict(gold)
    row["majority"] = gold.most_common(1)[0][1] / len(test)
    choice, generate = Readout(fmt, ReadoutMode.CHOICE), Readout(fmt, ReadoutMode.GENERATE)
    direct = {"direct_choice": Readout(fmt, ReadoutMode.CHOICE, False)}
    direct["direct_generate"] = Readout(fmt, ReadoutMode.GENERATE, False)
    predicted: Counter = Counter()
    wordings: dict[str, list[bool]] = {w: [] for w in WORDINGS}
    examples_shown = []
    for key, text in PROMPTS.items():
        ids = [tuple(rt.encode_prompt(text))]
        chosen = rollout(rt, choice, test, ids, args.max_new_tokens, label=f"{name}: {key}")[0]
        drafts = chosen.reasonings
        generated = rollout(rt, generate, test, ids, args.max_new_tokens, drafts=drafts)[0]
        scores = {"choice": accuracy(chosen.correct), "generate": accuracy(generated.correct)}
        for mode, readout in direct.items():
            scores[mode] = accuracy(rollout(rt, readout, test, ids, 0)[0].correct)
        row["scores"][key] = scores
        if choice.chooses:
            predicted.update(fmt.normalize_gold(a) for a in chosen.answers)
        if choice.chooses and key == "step_by_step":
            wordings["unnamed"] += chosen.correct
            for order in WORDINGS[1:]:
                named = NamedOptions(fmt, ReadoutMode.CHOICE, True, order=order)
                wordings[order] += rollout(rt, named, test, ids, args.max_new_tokens, drafts=drafts)[0].correct
        for ex, r, a, g, c in list(zip(test, drafts, chosen.answers, generated.answers, chosen.correct, strict=True))[
            :2
        ]:
            examples_shown.append(
                {
                    "prompt": text,
                    "question": ex.question[:300],
                    "reasoning": rt.decode(r),
                    "choice": a,
                    "generated": g,
                    "gold": ex.answer,
                    "choice_correct": c,
                }
            )
    if choice.chooses:
        row["predicted_counts"] = dict(predicted)
        row["wordings"] = {w: accuracy(c) for w, c in wordings.items()}
    row["examples"] = examples_shown
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def cell(s: dict) -> str:
    return f"{s['accuracy']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"


def write_summary(out: Path, rows: list[dict], args) -> None:
    mean = {
        p: {r: statistics.fmean(row["scores"][p][r]["accuracy"] for row in rows) for r in READOUTS} for p in PROMPTS
    }
    closed = [row for row in rows if "wordings" in row]
    wording_mean = {w: statistics.fmean(row["wordings"][w]["accuracy"] for row in closed) for w in WORDINGS}
    below = [
        row["task"]
        for row in closed
        if row["scores"]["step_by_step"]["choice"]["ci95"][1] < 1 / max(len(row["gold_counts"]), 1)
    ]
    (out / "results.json").write_text(
        json.dumps(
            {
                "settings": vars(args) | {"out": str(args.out), "data": str(args.data)},
                "tasks": rows,
                "mean": mean,
                "wording_mean": wording_mean,
                "below_chance": below,
            },
            indent=2,
        )
    )
    lines = [
        "| task | type | n | majority | prompt | generate | choice | direct, generate | direct, choice |",
        "|---|---|---:|---:|---|---|---|---|---|",
    ]
    for row in rows:
        for i, p in enumerate(PROMPTS):
            s = row["scores"][p]
            head = (
                f"| {row['task']} | {row['answer_type']} | {row['test_examples']} | {row['majority']:.2f}"
                if i == 0
                else "| | | | "
            )
            lines.append(f"{head} | {p} | " + " | ".join(cell(s[r]) for r in READOUTS) + " |")
    for p in PROMPTS:
        lines.append(
            f"| **mean of {len(rows)}** | | | | {p} | " + " | ".join(f"**{mean[p][r]:.3f}**" for r in READOUTS) + " |"
        )
    lines += [
        "",
        f"Test accuracy with 95% Wilson intervals; model {args.model}, seed {args.seed}, the accuracy "
        f"benchmark's test split ({args.train}/{args.dev}/{args.test} train/dev/test), reasoning up to "
        f"{args.max_new_tokens} tokens (greedy, the same reasoning under both readouts). Closed-set tasks "
        f"whose choice accuracy with step-by-step reasoning has its whole interval below 1/(number of "
        f"answers): {', '.join(below) or 'none'}.",
        "",
        "Choice readout by extractor wording (closed-set tasks, the step-by-step prompt, the same reasoning), and "
        "how often each answer is predicted under the choice readout against how often it is gold (three prompts):",
        "",
        "| task | options not named | named in order | named reversed | predicted (choice) | gold |",
        "|---|---|---|---|---|---|",
    ]
    for row in closed:
        w = row["wordings"]
        pred = ", ".join(f"{k} {v}" for k, v in sorted(row["predicted_counts"].items()))
        gold = ", ".join(f"{k} {3 * v}" for k, v in sorted(row["gold_counts"].items()))
        lines.append(f"| {row['task']} | " + " | ".join(cell(w[k]) for k in WORDINGS) + f" | {pred} | {gold} |")
    lines.append(
        f"| **mean of {len(closed)}** | " + " | ".join(f"**{wording_mean[k]:.3f}**" for k in WORDINGS) + " | | |"
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder (default ../shared/data)")
    parser.add_argument("--tasks", nargs="+", help="bbh/NAME, fsc/NAME, gsm8k, folio or task specs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "readout")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--dev", type=int, default=48)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    try:
        specs = task_specs(args.data or default_data_dir(), args.tasks)

        def done(rows: list[dict]) -> None:
            row = rows[-1]
            s = row["scores"]["step_by_step"]
            print(
                f"{row['task']}: step by step generate {s['generate']['accuracy']:.3f}, choice "
                f"{s['choice']['accuracy']:.3f}, direct choice {s['direct_choice']['accuracy']:.3f} "
                f"({row['seconds']:.0f} s)",
                file=sys.stderr,
            )
            write_summary(args.out, rows, args)

        rows = resumable_rows(args.out, specs, lambda name, spec: measure_task(name, spec, args), done)
        write_summary(args.out, rows, args)
    except GradpromptError as exc:
        print(f"readout benchmark: {exc}", file=sys.stderr)
        return 2
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
