"""Write a task whose questions are as long as BIG-Bench Hard's longest (causal_judgement's run to
200-300 words), for measuring speed and memory on long questions: question i is formal_fallacies
arguments i and i+1 (wrapping around, so there are as many questions as arguments), the second
one's answer the gold answer. The answers stay
well defined (the task asks about the last argument) but the task is for timing, not accuracy.

    python benchmarks/long_questions.py [--source ../shared/data/bbh/formal_fallacies.json] [--out F.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/bbh/formal_fallacies.json")
    parser.add_argument("--out", type=Path, default=Path("long_questions.jsonl"))
    args = parser.parse_args()
    examples = json.loads(args.source.read_text())["examples"]
    with args.out.open("w") as f:
        for first, second in zip(examples, examples[1:] + examples[:1], strict=True):
            question = f"{first['input']}\n\nThe argument to judge is the next one.\n\n{second['input']}"
            f.write(json.dumps({"question": question, "answer": second["target"]}) + "\n")
    words = sorted(len(json.loads(line)["question"].split()) for line in args.out.read_text().splitlines())
    print(f"{args.out}: {len(words)} questions, median {words[len(words) // 2]} words, longest {words[-1]}")


if __name__ == "__main__":
    main()
