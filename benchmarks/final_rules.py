"""How often each final rule hands back a better prompt, and how much it gains, when the truth is known.

The final choice tests the search's start (a baseline that won the pool race) and the search's own
prompts against the initial prompt on dev. Which of them is really better varies from run to run:
on classification with reasoning the empty prompt is often the better start and the search's
prompts overfit the pool; with direct answers the search's prompts carry the gain and the start is
only a little better. This simulates dev outcomes for both cases and their mixtures (examples of
varying difficulty shared by all prompts, as with one model) and runs every rule of
:func:`nodes.decisions.final_choice` on the same draws:

- ``shared_alpha`` (the default): the start and the search's prompts at alpha / 2 each, a passed
  test handing its level on;
- ``fixed_sequence``: the start first, then the search's prompts in pool order, at alpha each;
- ``pool_order``: the search's prompts first (they lead the pool), the start last;
- ``bonferroni``: the dev leader at alpha / finalists.

For each scenario it reports the share of runs that changed the prompt and the mean true gain of
what was handed back (in points; 0 when the initial prompt was kept). Under the null every rule
must change the prompt at most alpha of the time. Writes ``OUT/final_rules.md`` and ``.json``.

    python benchmarks/final_rules.py [--runs 1000] [--dev 200]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradprompt.nodes.decisions import Outcome, final_choice  # noqa: E402

# (name, true gain of the start, true gains of the search's three prompts in pool order), in points
SCENARIOS = (
    ("all equal to the initial prompt (null)", 0, (0, 0, 0)),
    ("the start +8, the search's prompts overfit (+0)", 8, (0, 0, 0)),
    ("the start +0, the search's first prompt +8", 0, (8, 4, 0)),
    ("the start +4, the search's first prompt +12", 4, (12, 6, 0)),
    ("the start +8, the search's first prompt +12", 8, (12, 0, 0)),
    ("the start +0, the search's second prompt +10", 0, (0, 10, 0)),
)
# rule -> (the order the finalists are passed in, keyword arguments); index 0 is the start
RULES = {
    "shared_alpha": ((0, 1, 2, 3), {"rule": "shared_alpha", "start_apart": True}),
    "fixed_sequence": ((0, 1, 2, 3), {}),
    "pool_order": ((1, 2, 3, 0), {}),
    "bonferroni": ((0, 1, 2, 3), {"rule": "bonferroni"}),
}


def _outcomes(correct: list[bool]) -> list[Outcome]:
    return [Outcome(c, -1.0, 1.0, margin=1.0 if c else -1.0) for c in correct]


def simulate(start: float, search: tuple, runs: int, dev: int, alpha: float, seed: int) -> dict:
    """Per rule: the share of runs that changed the prompt and the mean true gain handed back."""
    rng = random.Random(seed)
    gains = (start, *search)
    changed = {r: 0 for r in RULES}
    gained = {r: 0.0 for r in RULES}
    for _ in range(runs):
        difficulty = [rng.random() for _ in range(dev)]

        def prompt(points: float, difficulty=difficulty) -> list[bool]:
            return [rng.random() < 0.25 + 0.5 * d + points / 100 for d in difficulty]

        initial = _outcomes(prompt(0))
        finalists = [_outcomes(prompt(g)) for g in gains]
        for rule, (order, kwargs) in RULES.items():
            choice = final_choice(initial, [finalists[i] for i in order], alpha, **kwargs)
            if not choice.kept_initial:
                changed[rule] += 1
                gained[rule] += gains[order[choice.chosen]]
    return {r: {"changed": changed[r] / runs, "mean_gain": gained[r] / runs} for r in RULES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated runs per scenario")
    parser.add_argument("--dev", type=int, default=200, help="dev examples")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "final_rules")
    args = parser.parse_args(argv)
    results = [
        {"scenario": name, "start": s, "search": list(g), **simulate(s, g, args.runs, args.dev, args.alpha, args.seed)}
        for name, s, g in SCENARIOS
    ]
    lines = [
        f"{args.runs} simulated runs per scenario, {args.dev} dev examples, alpha {args.alpha}; each cell: the mean "
        "true gain handed back in points (the share of runs that changed the prompt).",
        "",
        "| scenario | " + " | ".join(RULES) + " |",
        "|---|" + "---:|" * len(RULES),
    ]
    for r in results:
        cells = [f"{r[k]['mean_gain']:+.1f} ({r[k]['changed']:.0%})" for k in RULES]
        lines.append(f"| {r['scenario']} | " + " | ".join(cells) + " |")
    worst = {k: min(r[k]["mean_gain"] for r in results[1:]) for k in RULES}
    lines += [
        "",
        "Worst case over the scenarios with a real gain: " + ", ".join(f"{k} {v:+.1f}" for k, v in worst.items()),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "final_rules.json").write_text(
        json.dumps({"settings": vars(args) | {"out": str(args.out)}, "results": results}, indent=2)
    )
    (args.out / "final_rules.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
