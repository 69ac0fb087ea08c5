"""What running the chat header once per batch saves: the same work with and without it, in one run.

Every row of a batch starts with the chat template's system header, before any question differs.
The decoder runs it once per batch beneath the per-question prefixes; switched off here
(``common_prefix_length`` returning 0), every question's prefix carries its own copy, as before.
Two measurements, each alternating off/on ``--repeats`` times after a warm-up, medians reported:

1. **decode**: ``reason_and_answer`` on SST-2 rows as the race and the final scoring see them (7
   prompts x 48 questions, direct answers; one prompt x 48 questions; 7 x 48 with 16 reasoning
   tokens), with a check that the answers are the same;
2. **run**: a 3-step direct-answer ``optimize`` on SST-2 (pool 50, dev 100, no test), with a check
   that it returns the same prompt.

    python benchmarks/shared_header.py [--repeats 2] [--out benchmarks/results/shared_header]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradprompt.nodes.runtime.decoding as decoding  # noqa: E402
from gradprompt.graph.api import optimize  # noqa: E402
from gradprompt.nodes.runtime.decoding import DecodeJob  # noqa: E402
from gradprompt.nodes.runtime.model_runtime import ModelRuntime  # noqa: E402

PROMPTS = (
    "Classify the sentiment of the review.",
    "Classify the sentiment of this review.",
    "Classify sentiment of the review.",
    "Please classify the sentiment of the review.",
    "",
    "Let's think step by step.",
    "Answer the question.",
)
SHARED = decoding.common_prefix_length


def header_sharing(on: bool) -> None:
    decoding.common_prefix_length = SHARED if on else (lambda jobs, shared: 0)


def alternate(fn, repeats: int) -> tuple[dict, list]:
    """Median seconds of ``fn()`` with the header shared and not, alternating; and the outputs."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, object] = {}
    for _ in range(repeats):
        for on in (False, True):
            header_sharing(on)
            start = time.perf_counter()
            outputs[on] = fn()
            seconds[on].append(time.perf_counter() - start)
    header_sharing(True)
    old, new = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {"without_s": round(old, 2), "shared_s": round(new, 2), "ratio": round(old / new, 2)}, [
        outputs[False],
        outputs[True],
    ]


def decode_rows(rt: ModelRuntime, questions: list[str], prompts, extractor, options) -> list[DecodeJob]:
    return [
        DecodeJob(c.ids, c.prompt, extractor, (), (), options)
        for p in prompts
        for c in rt.contexts(questions, rt.encode_prompt(p))
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fsc" / "sst-2.jsonl")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shared_header")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows_in = [json.loads(line) for line in args.data.read_text().splitlines()[:48]]
    questions = [r["question"] for r in rows_in]
    rt = ModelRuntime.from_spec("smollm2", "after", "cpu", "float32", 32)
    extractor = rt.layout.text_ids(" The answer is")
    options = (tuple(rt.layout.text_ids(" positive")), tuple(rt.layout.text_ids(" negative")))
    results = []
    for label, prompts, new_tokens in (
        ("decode: 7 prompts x 48 questions, direct", PROMPTS, 0),
        ("decode: 1 prompt x 48 questions, direct", PROMPTS[:1], 0),
        ("decode: 7 prompts x 48 questions, 16 reasoning tokens", PROMPTS, 16),
    ):
        jobs = decode_rows(rt, questions, prompts, extractor, options)
        rt.reason_and_answer(jobs[:8], new_tokens, 4)  # warm-up
        timing, (old, new) = alternate(lambda jobs=jobs, n=new_tokens: rt.reason_and_answer(jobs, n, 4), args.repeats)
        same = [o.answer for o in old] == [o.answer for o in new]
        results.append({"what": label, "rows": len(jobs), **timing, "same_outputs": same})
        print(results[-1], flush=True)

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            result = optimize(
                f"jsonl:{args.data}",
                steps=3,
                train=50,
                dev=100,
                test=0,
                max_new_tokens=0,
                n_evaluate=6,
                initial_prompt=PROMPTS[0],
                run_dir=f"{tmp}/runs",
                store=f"{tmp}/store",
            )
            return result.best_prompt

    run()  # warm-up: model load and first-call costs
    timing, (old, new) = alternate(run, args.repeats)
    results.append(
        {"what": "run: optimize, 3 steps, pool 50, dev 100", "rows": None, **timing, "same_outputs": old == new}
    )
    print(results[-1], flush=True)
    (args.out / "shared_header.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"SmolLM2-135M, float32, CPU, medians of {args.repeats} alternating runs; the same work with the chat header "
        "run once per batch (shared) and once per question (without).",
        "",
        "| what | rows | without (s) | shared (s) | ratio | same outputs |",
        "|---|---:|---:|---:|---:|:-:|",
        *(
            f"| {r['what']} | {r['rows'] or ''} | {r['without_s']:.1f} | {r['shared_s']:.1f} | {r['ratio']:.2f}x | "
            f"{'yes' if r['same_outputs'] else 'no'} |"
            for r in results
        ),
    ]
    (args.out / "shared_header.md").write_text("\n".join(lines) + "\n")
    print(f"speedup: {results[-1]['ratio']:.2f}x a whole run with the header shared")


if __name__ == "__main__":
    main()
