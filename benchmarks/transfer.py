"""What the trajectory buys a new task: cold runs against warm runs that reuse earlier tasks' prompts.

The tasks of a data folder are split in two by a seed. The **fill** half is optimized one task after
another into one fresh trajectory store. Each task of the **held-back** half is then optimized three
times with the same settings and seed: **cold** (an empty store of its own, no warm start: the search
has no memory), **warm** (a copy of the filled store, with cross-task retrieval and a warm start that
takes the similar tasks' stored prompt with the best dev accuracy, whatever the margin) and **raced**
(the same, but the stored prompts race the initial one on dev and one is taken only with a
significant lead, gradprompt's default). Each arm has its own runs folder and rollout cache, so none
pays for or profits from another's model calls.

Per held-back task it reports test accuracy of the initial prompt and of each arm's final prompt,
the paired difference of each warm arm minus cold on test with its 95% interval, and how many
steps (and seconds of the run's nodes) each arm needed before the prompt it held reached the cold
run's final dev accuracy; over tasks, the means with 95% t-intervals. Every finished run and task is
kept, so an interrupted benchmark started again with the same command goes on where it stopped.

    python benchmarks/transfer.py                         # the 16 tasks of ../shared/data, 8 + 8
    python benchmarks/transfer.py --split-seed 1 --steps 4
    python benchmarks/transfer.py --tasks builtin:compare builtin:category builtin:arithmetic builtin:sentiment
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import (  # noqa: E402
    DEFAULT_INITIAL,
    _write_row,
    cell,
    check_out_folder,
    default_data_dir,
    gain_cell,
    mean_cell,
    mean_interval,
    score,
    task_specs,
)

from gradprompt.errors import GradpromptError  # noqa: E402
from gradprompt.graph.api import make_settings, run_values  # noqa: E402
from gradprompt.graph.sweep import PlannedRun, run_one  # noqa: E402
from gradprompt.nodes.decisions import paired_gain  # noqa: E402
from gradprompt.nodes.session import rollouts, session  # noqa: E402
from gradprompt.store.checkpoints import open_rollout_store  # noqa: E402

FIXED = ("model", "seed", "steps", "train", "dev", "test", "batch_size", "max_new_tokens", "n_evaluate")
ARMS = ("cold", "warm", "raced")
WARM_RULES = {"warm": "best", "raced": "race"}  # the warm arms and how each chooses its start
COLOURS = {"initial": "#999999", "cold": "#4c72b0", "warm": "#dd8452", "raced": "#55a868"}


def split_tasks(names: list[str], split_seed: int, fill: int) -> tuple[list[str], list[str]]:
    """The fill half and the held-back half, drawn by the seed (each listed in the folder's order)."""
    if not 1 <= fill < len(names):
        raise GradpromptError(f"--fill {fill} must leave at least one of the {len(names)} tasks held back")
    chosen = set(random.Random(split_seed).sample(names, fill))
    return [n for n in names if n in chosen], [n for n in names if n not in chosen]


def slug(name: str) -> str:
    return name.replace("/", "-").replace(":", "-")


def run_settings(fixed: dict, common: dict, store: Path, arm: str) -> dict:
    settings = {k: v for k, v in fixed.items() if k not in ("model", "seed")}
    warm = {"warm_start": True, "warm_start_rule": WARM_RULES[arm]} if arm in WARM_RULES else {"warm_start": False}
    return {**settings, **common, "store": str(store), "cross_task": True, **warm}


def optimized(run_id: str, spec: str, fixed: dict, settings: dict, runs: Path) -> dict:
    """Start, resume or read the run; its final state."""
    outcome = run_one(PlannedRun(run_id, spec, fixed["model"], fixed["seed"]), settings, str(runs), None)
    if outcome.status != "finished":
        raise GradpromptError(f"run {run_id} {outcome.status}: {outcome.error} (start the benchmark again to resume)")
    return run_values(run_id, run_dir=runs)


def scored(spec: str, fixed: dict, settings: dict, runs: Path, split: str, prompts: list[tuple[int, ...]]) -> list:
    """Rollouts of prompts on a split through the arm's rollout cache (most are already there)."""
    settings = make_settings(spec, model=fixed["model"], seed=fixed["seed"], **settings)
    with open_rollout_store(runs) as cache:
        sess = session(settings, cache_store=cache)
        return rollouts(sess, getattr(sess.splits, split), prompts)


def held_after_steps(values: dict) -> list[tuple[tuple[int, ...], float]]:
    """The prompt the run had to offer after each step with the seconds its nodes had taken up to
    then: step 0 is where the search started (the best of the baselines and any warm-start prompt on
    the pool), later steps the prompt it held,
    and after the last step the prompt it returned (the final choice on dev)."""
    history = values.get("history", [])
    start = tuple((values.get("start") or values["baseline"])["prompt"])
    total = (values.get("warm_start") or {}).get("seconds", 0.0)  # scoring stored prompts on dev
    held = [(start, total)]
    for h in history:
        total += sum(h.get("timings", {}).values())
        held.append((tuple(h["accepted"]["prompt"]), total))
    if history:
        held[-1] = (final_prompt(values), total)
    return held


def reach(spec, fixed, settings, runs: Path, values: dict, target: float) -> dict:
    """The first step at which the held prompt's dev accuracy reached ``target``, and its seconds."""
    held = held_after_steps(values)
    prompts = list(dict.fromkeys(p for p, _ in held))
    dev = dict(zip(prompts, scored(spec, fixed, settings, runs, "dev", prompts), strict=True))
    curve = [round(dev[p].accuracy, 4) for p, _ in held]
    for step, (prompt, seconds) in enumerate(held):
        if dev[prompt].accuracy >= target - 1e-9:
            return {"steps": step, "seconds": round(seconds, 1), "dev_curve": curve}
    return {"steps": None, "seconds": None, "dev_curve": curve}


def final_prompt(values: dict) -> tuple[int, ...]:
    return tuple(values["final"]["best"]["prompt"])


def fill_phase(fill: list[str], specs: dict[str, str], fixed: dict, common: dict, out: Path) -> list[dict]:
    rows = []
    for name in fill:
        path = out / "fill" / "tasks" / f"{slug(name)}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        print(f"fill: optimizing {name}", file=sys.stderr, flush=True)
        settings = run_settings(fixed, common, out / "fill" / "store", "cold")
        values = optimized(f"fill-{slug(name)}", specs[name], fixed, settings, out / "fill" / "runs")
        final = values["final"]
        row = {
            "task": name,
            "initial_test": final["baseline"]["test_accuracy"],
            "final_test": final["best"]["test_accuracy"],
            "kept_initial": final["kept_initial"],
            "prompt": final["best"]["text"],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_row(path, row)
        rows.append(row)
    return rows


def filled_copy(out: Path, arm: str, name: str) -> Path:
    """A warm run's own copy of the filled store, made once (atomically) before it starts."""
    target = out / arm / "stores" / slug(name)
    if not target.exists():
        tmp = target.with_name(target.name + ".copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out / "fill" / "store", tmp)
        tmp.rename(target)
    return target


def held_task(name: str, spec: str, fixed: dict, common: dict, out: Path) -> dict:
    stores = {arm: filled_copy(out, arm, name) for arm in WARM_RULES} | {"cold": out / "cold" / "stores" / slug(name)}
    arm_settings = {arm: run_settings(fixed, common, stores[arm], arm) for arm in ARMS}
    values = {}
    for arm in ARMS:
        print(f"{arm}: optimizing {name}", file=sys.stderr, flush=True)
        values[arm] = optimized(f"{arm}-{slug(name)}", spec, fixed, arm_settings[arm], out / arm / "runs")
    cold = values["cold"]
    initial = tuple(cold["baseline"]["prompt"])
    (init_t, cold_t) = scored(
        spec, fixed, arm_settings["cold"], out / "cold" / "runs", "test", [initial, final_prompt(cold)]
    )
    test = {"cold": cold_t}
    for arm in WARM_RULES:
        (test[arm],) = scored(spec, fixed, arm_settings[arm], out / arm / "runs", "test", [final_prompt(values[arm])])
    n = len(cold_t.correct)
    target = cold["final"]["best"]["dev_accuracy"]
    row = {
        "task": name,
        "spec": spec,
        "test_examples": n,
        "initial": score(sum(init_t.correct), n),
        **{arm: score(sum(test[arm].correct), n) for arm in ARMS},
        **{f"{arm}_minus_cold": paired_gain(test[arm].correct, cold_t.correct).to_json() for arm in WARM_RULES},
        "cold_final_dev": target,
        "reach_cold_dev": {
            arm: reach(spec, fixed, arm_settings[arm], out / arm / "runs", values[arm], target) for arm in ARMS
        },
        "prompts": {arm: values[arm]["final"]["best"]["text"] for arm in ARMS},
        "kept_initial": {arm: values[arm]["final"]["kept_initial"] for arm in ARMS},
        "seconds": {arm: held_after_steps(values[arm])[-1][1] for arm in ARMS},
    }
    for arm in WARM_RULES:
        ws = values[arm].get("warm_start") or {}
        considered = ws.get("considered") or []
        chosen = considered[ws.get("chosen", 0)] if considered else {}
        row[f"{arm}_start"] = {
            "considered": len(considered),
            "chosen_task": None if chosen.get("initial") else chosen.get("task"),
            "chosen_text": chosen.get("text"),
            "seconds": ws.get("seconds"),
            "dev_examples": sum(c.get("dev_examples", fixed["dev"]) for c in considered),
        }
    return row


def _steps(x) -> str:
    return "never" if x is None else str(x)


def write_summary(out: Path, plan: dict, fill_rows: list[dict], rows: list[dict], fixed: dict) -> dict:
    warm_arms = list(WARM_RULES)
    lines = [
        "| task | n test | initial | "
        + " | ".join(ARMS)
        + " | "
        + " | ".join(f"{a} - cold (95% CI)" for a in warm_arms)
        + " | start taken from ("
        + " / ".join(warm_arms)
        + ") | steps to cold's final dev ("
        + " / ".join(ARMS)
        + ") | seconds ("
        + " / ".join(ARMS)
        + ") |",
        "|---|---:|" + "---|" * (1 + len(ARMS) + len(warm_arms) + 1) + "---:|---:|",
    ]

    for r in rows:
        rc = r["reach_cold_dev"]
        lines.append(
            f"| {r['task']} | {r['test_examples']} | {cell(r['initial'])} | "
            + " | ".join(cell(r[a]) for a in ARMS)
            + " | "
            + " | ".join(gain_cell(r[f"{a}_minus_cold"]) for a in warm_arms)
            + " | "
            + " / ".join(r[f"{a}_start"]["chosen_task"] or "initial" for a in warm_arms)
            + " | "
            + " / ".join(_steps(rc[a]["steps"]) for a in ARMS)
            + " | "
            + " / ".join(_secs(rc[a]["seconds"]) for a in ARMS)
            + " |"
        )
    summary: dict = {"plan": plan, "settings": fixed, "fill": fill_rows, "held": rows}
    if rows:
        means = {k: mean_interval([r[k]["accuracy"] for r in rows]) for k in ("initial", *ARMS)}
        diffs = {a: mean_interval([r[f"{a}_minus_cold"]["gain"] for r in rows]) for a in warm_arms}
        half = {a: sum(1 for r in rows if _in_half_the_steps(r["reach_cold_dev"], a)) for a in warm_arms}
        start_seconds = {a: statistics.fmean(r[f"{a}_start"]["seconds"] or 0.0 for r in rows) for a in warm_arms}
        summary.update(
            means=means,
            minus_cold=diffs,
            reached_in_half_the_steps=half,
            warm_start_seconds=start_seconds,
        )

        lines.append(
            f"| **mean of {len(rows)} tasks** | | {mean_cell(means['initial'])} | "
            + " | ".join(mean_cell(means[a]) for a in ARMS)
            + " | "
            + " | ".join(mean_cell(diffs[a]) for a in warm_arms)
            + " | | "
            + " / ".join(_mean_steps(rows, a) for a in ARMS)
            + " | |"
        )
        cold_steps = [r["reach_cold_dev"]["cold"]["steps"] for r in rows]
        lines += [
            "",
            f"Held-back tasks ({len(rows)} of {len(plan['held'])} finished): {', '.join(plan['held'])}. "
            f"Fill tasks (split seed {plan['split_seed']}): {', '.join(plan['fill'])}.",
            "",
            "Arms: cold starts from the initial prompt with an empty store; warm and raced start from a copy of the "
            "filled store, retrieve across tasks and warm-start. warm takes the stored prompt with the best dev "
            "accuracy whatever the margin; raced races the stored prompts against the initial one on dev, dropping "
            "those a paired test puts behind, and takes one only with a significant dev lead.",
            "",
            "Accuracies on each task's test split with 95% Wilson intervals; X - cold is the paired difference "
            "of the two final prompts on the same test examples (95% Agresti-Min interval, exact McNemar p); means "
            "over tasks carry 95% t-intervals over tasks. Steps to cold's final dev: the first step (0 = the "
            "starting prompt, after a warm start) at which the prompt the run held scored at least the cold run's "
            f"final dev accuracy on dev; the cold run itself got there at step 0 on "
            f"{sum(1 for s in cold_steps if s == 0)} of {len(rows)} tasks (it kept or matched its start). Runs "
            "reaching it in at most half the cold run's steps (of tasks where the cold run needed any): "
            + ", ".join(f"{a} {half[a]}" for a in warm_arms)
            + ". Seconds: the run's node time up to that step, the warm start's scoring of stored prompts on dev "
            "included; the warm start itself took "
            + ", ".join(f"{start_seconds[a]:.0f} s ({a})" for a in warm_arms)
            + " on average.",
        ]
    lines += [
        "",
        f"Settings: model {fixed['model']}, seed {fixed['seed']}, {fixed['steps']} steps, "
        f"{fixed['train']}/{fixed['dev']}/{fixed['test']} train/dev/test examples, gradient batch "
        f"{fixed['batch_size']}, {fixed['n_evaluate']} candidates raced per step, reasoning up to "
        f"{fixed['max_new_tokens']} tokens, refinement off, initial prompt {DEFAULT_INITIAL!r}.",
    ]
    if fill_rows:
        lines += [
            "",
            "Fill runs (their final prompts and every candidate they evaluated fill the warm store): "
            + "; ".join(
                f"{r['task']} {r['initial_test']:.2f} -> {r['final_test']:.2f}"
                + (" (kept initial)" if r["kept_initial"] else "")
                for r in fill_rows
            )
            + " (test accuracy).",
        ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    if rows:
        plot(out / "transfer.png", rows)
    return summary


def _in_half_the_steps(reached: dict, arm: str) -> bool:
    """Whether a warm run got to the cold run's final dev accuracy in at most half its steps."""
    cold, warm = reached["cold"]["steps"], reached[arm]["steps"]
    return cold is not None and warm is not None and cold > 0 and warm <= cold / 2


def _secs(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def _mean_steps(rows: list[dict], arm: str) -> str:
    steps = [r["reach_cold_dev"][arm]["steps"] for r in rows]
    known = [s for s in steps if s is not None]
    if not known:
        return "-"
    return f"{statistics.fmean(known):.2f}" + (f" ({len(steps) - len(known)} never)" if len(known) < len(steps) else "")


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 1.1 * len(rows)), 7), sharex=True)
    xs = range(len(rows))
    keys = ("initial", *ARMS)
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        vals = [r[key]["accuracy"] for r in rows]
        low = [r[key]["accuracy"] - r[key]["ci95"][0] for r in rows]
        high = [r[key]["ci95"][1] - r[key]["accuracy"] for r in rows]
        shift = (j - (len(keys) - 1) / 2) * width
        top.bar([x + shift for x in xs], vals, width, yerr=[low, high], label=key, color=COLOURS[key], capsize=2)
    top.set_ylabel("test accuracy (95% CI)")
    top.legend(ncol=len(keys), fontsize=8)
    for j, arm in enumerate(WARM_RULES):
        gains = [r[f"{arm}_minus_cold"] for r in rows]
        bottom.errorbar(
            [x + (j - 0.5) * 0.2 for x in xs],
            [g["gain"] for g in gains],
            yerr=[[g["gain"] - g["ci95"][0] for g in gains], [g["ci95"][1] - g["gain"] for g in gains]],
            fmt="o",
            capsize=3,
            color=COLOURS[arm],
            label=f"{arm} - cold",
        )
    bottom.legend(fontsize=8)
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel("minus cold, paired (95% CI)")
    bottom.set_xticks(list(xs), [r["task"].split("/")[-1] for r in rows], rotation=35, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="benchmark data folder (default ../shared/data)")
    parser.add_argument("--tasks", nargs="+", help="bbh/NAME, gsm8k, folio or task specs (default: all in --data)")
    parser.add_argument("--fill", type=int, default=None, help="tasks that fill the store (default: half)")
    parser.add_argument("--split-seed", type=int, default=0, help="draws which tasks fill the store")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transfer")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--dev", type=int, default=32)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--n-evaluate", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        fixed = {k: getattr(args, k) for k in FIXED}
        specs = task_specs(args.data or default_data_dir(), args.tasks)
        names = list(specs)
        fill, held = split_tasks(names, args.split_seed, args.fill if args.fill is not None else len(names) // 2)
        plan = {"split_seed": args.split_seed, "fill": fill, "held": held}
        check_out_folder(args.out, {**fixed, **plan})
        common = {"initial_prompt": DEFAULT_INITIAL, "refine": False, "keep_best": 4}
        fill_rows = fill_phase(fill, specs, fixed, common, args.out)
        rows = []
        for name in held:
            path = args.out / "tasks" / f"{slug(name)}.json"
            if not path.is_file() or any(arm not in json.loads(path.read_text()) for arm in ARMS):
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_row(path, held_task(name, specs[name], fixed, common, args.out))
            rows.append(json.loads(path.read_text()))
            write_summary(args.out, plan, fill_rows, rows, fixed)
        write_summary(args.out, plan, fill_rows, rows, fixed)
    except GradpromptError as exc:
        print(f"transfer benchmark: {exc}", file=sys.stderr)
        return 2
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
