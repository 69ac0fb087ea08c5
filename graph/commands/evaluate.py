"""``gradprompt evaluate``: score prompts on a split exactly as runs score them, compare them paired
on the same examples, and show what the model wrote."""

from __future__ import annotations

import argparse
import json

from gradprompt.graph.commands.flags import EVALUATE_FIELDS, add_settings_flags, settings_from


def _interval(score: dict) -> str:
    low, high = score["ci95"]
    return f"{score['accuracy']:.3f} [95% CI {low:.2f}, {high:.2f}]"


def print_evaluation(out: dict) -> None:
    how = "answers chosen from the allowed set" if out["readout"] == "choice" else "answers parsed from the text"
    after = f"after up to {out['max_new_tokens']} reasoning tokens" if out["max_new_tokens"] else "directly"
    print(f"{out['split']} split, {out['examples']} examples ({how}, {after})")
    for i, p in enumerate(out["prompts"]):
        said = p["most_common_answer"] or {}
        print(
            f"  [{i + 1}] accuracy {_interval(p)}, {p['right']} right; prompt NLL {p['prompt_nll']:.2f}; "
            f"answers {said.get('answer')!r} on {said.get('share', 0):.0%}: {p['prompt']!r}"
        )
    majority = out["majority_answer"]
    if majority.get("accuracy") is not None:
        print(f"  always answering the most common gold answer ({majority['answer']!r}): {majority['accuracy']:.3f}")
    for c in out["comparisons"]:
        low, high = c["ci95"]
        print(
            f"  [{c['prompt'] + 1}] minus [{c['against'] + 1}]: {c['gain']:+.3f} [95% CI {low:+.2f}, {high:+.2f}], "
            f"two-sided paired p={c['p_value']:.3f} ({c['only_new_right']} examples only [{c['prompt'] + 1}] got "
            f"right, {c['only_old_right']} only [{c['against'] + 1}])"
        )
    for k, ex in enumerate(out["shown"], start=1):
        print(f"\nexample {k}: {ex['question']!r}")
        print(f"  gold: {ex['gold']!r}")
        for i, got in enumerate(ex["by_prompt"]):
            mark = "right" if got["correct"] else "wrong"
            tag = f"[{i + 1}] " if len(ex["by_prompt"]) > 1 else ""
            if got["reasoning"].strip():
                print(f"  {tag}reasoning: {got['reasoning'].strip()!r}")
            print(f"  {tag}read as: {got['answer']!r} ({mark})")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gradprompt.graph.evaluation import evaluate_prompts

    settings = settings_from(args)
    model = settings.pop("model", None) or "smollm2"
    out = evaluate_prompts(args.task, args.prompt, model=model, split=args.split, show=args.show, **settings)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_evaluation(out)
    return 0


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="score prompts the way runs do; compare several, paired",
        usage="%(prog)s --task TASK --prompt TEXT [--prompt TEXT ...] [--split SPLIT] [--show N] [options]",
        description="Score one or more prompts on a split exactly as runs score them. With several --prompt, "
        "each is compared with the first on the same examples (paired difference, 95% interval, McNemar p).",
    )
    what = ev.add_argument_group("what to evaluate")
    what.add_argument("--task", required=True, help="task spec, as for optimize")
    what.add_argument(
        "--prompt", required=True, action="append", help="the prompt text; repeat to compare prompts paired"
    )
    what.add_argument("--split", default="dev", choices=["train", "dev", "test"], help="(default dev)")
    what.add_argument(
        "--show", type=int, default=0, metavar="N", help="print N examples: reasoning, text read as answer, gold"
    )
    what.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_settings_flags(ev, EVALUATE_FIELDS)
    ev.set_defaults(func=cmd_evaluate)
