"""Time the optimization step on the bundled model, batched against a naive one-example-at-a-time
implementation, in the same process and on the same examples.

The naive engine does what the reference implementation does: for every prompt and every example
on its own, it generates the reasoning, then generates the answer from a fresh prefill and takes
the prompt's NLL with another forward; the gradient is one forward and one backward per example.
gradprompt's engine decodes all prompts x examples together on one KV cache, drafts candidates'
reasoning from the current prompt's, and takes the gradient in one forward + backward. The naive
engine is swapped in under the same node code, so both give the same candidates and scores (the
benchmark checks it).

Four measurements:

1. **phases** at the base size (medians over ``--repeats``): reason, propose+gradient, evaluate.
2. **direct answers**: the same phases with no reasoning (``max_new_tokens`` 0: the answer read
   right after the question and the prompt, the gradient over question and prompt only), and the
   share of a reasoning step it costs.
3. **graph step**: one whole step of the LangGraph run (retrieve, reason, propose, refine,
   evaluate, select, approve), with retrieval from a populated trajectory store and refinement by
   the local chat model, from the run's own node timings.
4. **scaling**: time per step as the minibatch grows (``--batch-sizes``) and as the reasoning
   budget grows (``--lengths``).

Each row reports seconds, the naive/batched ratio, generated tokens per second and the share of
the time spent inside model forward and backward passes. The tables go to ``OUT/step_speed.md``
(and ``.json``), the scaling plot to ``OUT/step_speed.png``; the last line printed reads
``speedup: X.X`` (naive / batched, phases at the base size).

    python benchmarks/step_speed.py [--examples 8] [--max-new-tokens 128] [--repeats 3]
    python benchmarks/step_speed.py --no-scaling --no-graph     # the phase table only
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
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import gradprompt.nodes.greater as greater  # noqa: E402
from gradprompt.graph.api import optimize  # noqa: E402
from gradprompt.nodes.decisions import Outcome  # noqa: E402
from gradprompt.nodes.runtime.model_runtime import ModelRuntime  # noqa: E402
from gradprompt.nodes.runtime.progress_bars import progress_bar  # noqa: E402
from gradprompt.nodes.runtime.scoring import PositionGradient, window_gradients  # noqa: E402
from gradprompt.nodes.runtime.usage import UsageCounts  # noqa: E402
from gradprompt.nodes.settings import StepSettings  # noqa: E402
from gradprompt.nodes.tasks.loaders import load_task  # noqa: E402
from gradprompt.nodes.tasks.readout import readout_of  # noqa: E402

PHASES = ("reason", "gradient", "evaluate")
STEP_NODES = ("retrieve", "reason", "propose", "refine", "evaluate", "select", "approve")
ENGINES = ("naive", "batched")


# ----- the naive engine --------------------------------------------------------------------------


def _logprob(rt: ModelRuntime, seq: Sequence[int], tail: int) -> float:
    """log p of the last ``tail`` tokens of ``seq`` given the rest, from one plain forward."""
    logits = rt.model(input_ids=torch.tensor([list(seq)], device=rt.device)).logits[0]
    start = len(seq) - tail
    logp = torch.log_softmax(logits[start - 1 : len(seq) - 1].float(), -1)
    return float(logp.gather(1, torch.tensor(seq[start:], device=rt.device)[:, None]).sum())


def naive_outcome(rt: ModelRuntime, answers, ex, prompt, max_new: int) -> Outcome:
    """One example as the reference code does it: reasoning as a ``generate`` call, then the answer
    (a second ``generate``, or a forward per allowed answer to choose from a closed set), the prompt
    NLL and the gold answer's log-probability as further forwards."""
    readout = greater.as_readout(answers, max_new)
    ctx = rt.layout.encode(ex.question, prompt)
    reasoning = rt.generate([ctx.ids], max_new)[0] if max_new else ()
    extractor = rt.extractor_ids(readout.extractor(ex.question))
    head = ctx.ids + reasoning + extractor
    nll = 0.0
    with torch.no_grad():
        if readout.chooses:
            options = [rt.extractor_ids(t) for _, t in readout.options(ex.question)]
            scores = [_logprob(rt, head + o, len(o)) for o in options]
            answer = options[max(range(len(options)), key=scores.__getitem__)]
        else:
            answer = rt.generate([head], readout.fmt.max_answer_tokens)[0]
        if ctx.prompt[1] > ctx.prompt[0]:
            logits = rt.model(input_ids=torch.tensor([ctx.ids], device=rt.device)).logits[0]
            logp = torch.log_softmax(logits[ctx.prompt[0] - 1 : ctx.prompt[1] - 1].float(), -1)
            targets = torch.tensor(ctx.ids[ctx.prompt[0] : ctx.prompt[1]], device=rt.device)
            nll = float(-logp.gather(1, targets[:, None]).mean())
        gold = rt.extractor_ids(readout.target(ex.answer))
        gold_lp = _logprob(rt, head + gold, len(gold))
    text = rt.tokenizer.decode(answer, skip_special_tokens=True)
    return Outcome(readout.is_correct(text, ex.answer, ex.question), gold_lp, nll, tuple(reasoning), text)


def naive_rollout_pairs(rt, fmt, pairs, max_new_tokens, label=None) -> list[Outcome]:
    """Same signature as the batched one; ignores drafts (the naive engine has none)."""
    return [naive_outcome(rt, fmt, ex, prompt, max_new_tokens) for prompt, ex, _ in pairs]


def naive_window_gradients(rt, rows, positions, *, temperature, nll_weight) -> list[PositionGradient]:
    """One forward and one backward over the whole sequence per example, summed: the same gradient,
    B times the calls, the question included in every backward."""
    per_row = [
        window_gradients(rt, [r], positions, temperature=temperature, nll_weight=nll_weight, prefix=False) for r in rows
    ]
    out = []
    for i in range(len(positions)):
        parts = [g[i] for g in per_row]
        out.append(
            PositionGradient(
                embed_grad=torch.stack([p.embed_grad for p in parts]).sum(0),
                position_logprobs=torch.cat([p.position_logprobs for p in parts]),
                answer_ce=torch.cat([p.answer_ce for p in parts]),
                prompt_nll=torch.cat([p.prompt_nll for p in parts]),
                prompt_len=parts[0].prompt_len,
                nll_weight=parts[0].nll_weight,
            )
        )
    return out


@contextmanager
def engine(kind: str) -> Iterator[None]:
    """Swap the naive engine in under the unchanged node and step code."""
    if kind == "batched":
        yield
        return
    with (
        mock.patch("gradprompt.nodes.greater.rollout_pairs", naive_rollout_pairs),
        mock.patch("gradprompt.nodes.greater.window_gradients", naive_window_gradients),
    ):
        yield


# ----- measurements ------------------------------------------------------------------------------


class PeakMemory:
    """Highest resident memory of this process (and, on CUDA, highest allocated GPU memory) while
    the block runs, sampled every few milliseconds: the OS's own peak counter cannot be reset
    between engines in one process."""

    def __init__(self) -> None:
        self.rss_bytes = 0
        self.cuda_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.rss_bytes = max(self.rss_bytes, self._rss())

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.rss_bytes = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.rss_bytes = max(self.rss_bytes, self._rss())
        if torch.cuda.is_available():
            self.cuda_bytes = torch.cuda.max_memory_allocated()


class Meter:
    """Seconds and model usage of one piece of work."""

    def __init__(self, rt: ModelRuntime):
        self.rt = rt
        self.seconds = 0.0
        self.usage = UsageCounts()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        start, before = time.perf_counter(), self.rt.usage.snapshot()
        yield
        self.seconds = time.perf_counter() - start
        self.usage = self.rt.usage.snapshot() - before

    def row(self) -> dict:
        s = max(self.seconds, 1e-9)
        return {
            "seconds": self.seconds,
            "calls": self.usage.calls,
            "tokens_generated": self.usage.tokens_generated,
            "tokens_per_s": self.usage.tokens_generated / s,
            "tokens_in": self.usage.tokens_in,
            "tokens_in_per_s": self.usage.tokens_in / s,
            "model_share": min(1.0, self.usage.model_seconds / s),
        }


@torch.no_grad()
def ceiling_rate(rt: ModelRuntime, tokens: int, length: int = 128, repeats: int = 3) -> dict:
    """Tokens per second of one large batched forward of the same model over ``tokens`` positions
    (rows of ``length``), logits at each row's last position only: the most a prefill-bound phase
    can get from this model on this machine. Median of ``repeats`` after a warm-up."""
    rows = max(1, round(tokens / length))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, min(len(rt.tokenizer), rt.embedding_matrix.shape[0]), (rows, length), generator=gen)
    ids = ids.to(rt.device)
    decoder, head = rt.model.get_decoder(), rt.model.get_output_embeddings()

    def once() -> float:
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)
        start = time.perf_counter()
        hidden = decoder(input_ids=ids).last_hidden_state
        head(hidden[:, -1])
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)
        return time.perf_counter() - start

    once()
    seconds = statistics.median(once() for _ in range(repeats))
    return {
        "tokens": rows * length,
        "rows": rows,
        "length": length,
        "seconds": seconds,
        "rate": rows * length / seconds,
    }


def phase_step(rt: ModelRuntime, task, settings: StepSettings, examples, prompt) -> tuple[dict[str, dict], list]:
    """reason, propose+gradient and evaluate once; returns per-phase rows and the candidate scores.
    Calls go through the module so the naive engine, when patched in, is the one that runs."""
    fmt = readout_of(task.answer_format, settings.readout, settings.max_new_tokens)
    rows = {}
    peak = PeakMemory().__enter__()
    m = Meter(rt)
    with m():
        current = greater.rollout(rt, fmt, examples, [prompt], settings.max_new_tokens)[0]
    rows["reason"] = m.row()
    m = Meter(rt)
    with m():
        proposal = greater.propose(rt, fmt, settings, examples, prompt, 1, current.reasonings, random.Random(0))
    rows["gradient"] = m.row()
    m = Meter(rt)
    top = proposal.top_prompts(settings.n_evaluate)
    with m():
        evaluated = greater.rollout(rt, fmt, examples, top, settings.max_new_tokens, drafts=current.reasonings)
    rows["evaluate"] = m.row()
    peak.__exit__(None, None, None)
    rows["step"] = {
        "seconds": sum(r["seconds"] for r in rows.values()),
        "calls": sum(r["calls"] for r in rows.values()),
        "tokens_generated": sum(r["tokens_generated"] for r in rows.values()),
        "tokens_in": sum(r["tokens_in"] for r in rows.values()),
    }
    s = rows["step"]
    s["tokens_per_s"] = s["tokens_generated"] / s["seconds"]
    s["model_share"] = sum(r["model_share"] * r["seconds"] for k, r in rows.items() if k != "step") / s["seconds"]
    s["peak_rss_gib"] = peak.rss_bytes / 2**30
    s["peak_cuda_gib"] = peak.cuda_bytes / 2**30
    scores = sorted(
        (list(p), round(r.score(settings.score_nll_weight), 4)) for p, r in zip(top, evaluated, strict=True)
    )
    return rows, scores


def one_step_run(args, store: Path, run_dir: Path, **settings):
    """A one-step run of the graph on the benchmark's task (dev of one example, no test split)."""
    return optimize(
        task_spec(args.task),
        steps=1,
        train=args.examples,
        dev=1,
        test=0,
        batch_size=args.examples,
        keep_best=1,
        trajectory=True,
        store=str(store),
        run_dir=run_dir,
        **settings,
    )


def graph_step(rt: ModelRuntime, kind: str, args, store: Path, run_dir: Path) -> dict:
    """One step of the real graph; time and usage from the end of ``prepare`` to the end of the step."""
    marks: dict[str, tuple[float, UsageCounts]] = {}

    def on_update(node: str, update: dict, settings: dict) -> None:
        if node in ("prepare", "advance"):
            marks[node] = (time.perf_counter(), rt.usage.snapshot())

    with engine(kind):
        result = one_step_run(
            args,
            store,
            run_dir,
            max_new_tokens=args.max_new_tokens,
            n_evaluate=args.candidates,
            refine=True,
            on_update=on_update,
        )
    (t0, u0), (t1, u1) = marks["prepare"], marks["advance"]
    seconds, usage = t1 - t0, u1 - u0
    timings = result.history[0]["timings"]
    return {
        "seconds": seconds,
        "nodes": {n: timings.get(n, 0.0) for n in STEP_NODES},
        "calls": usage.calls,
        "tokens_generated": usage.tokens_generated,
        "tokens_per_s": usage.tokens_generated / seconds,
        "model_share": min(1.0, usage.model_seconds / seconds),
        "candidates": sorted(c["text"] for c in result.history[0]["candidates"]),
    }


# ----- output ------------------------------------------------------------------------------------


def _ratio(n: float, b: float) -> str:
    return f"{n / b:.1f}x" if b > 0 else "-"


def ceiling_table(med: dict[str, dict], ceiling: dict) -> list[str]:
    """Each batched phase's rate of fed tokens (padding included) against the ceiling."""
    lines = [
        "| phase (batched) | tokens fed | seconds | tokens fed/s | share of ceiling | time inside the model |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in (*PHASES, "step"):
        b = med[p]
        rate = b["tokens_in"] / max(b["seconds"], 1e-9)
        lines.append(
            f"| {p} | {b['tokens_in']:.0f} | {b['seconds']:.2f} | {rate:.0f} | {rate / ceiling['rate']:.0%} | "
            f"{b['model_share']:.0%} |"
        )
    lines += [
        "",
        f"Ceiling: one batched forward of {ceiling['rows']} rows x {ceiling['length']} tokens (logits at each "
        f"row's last position) runs at {ceiling['rate']:.0f} tokens/s.",
    ]
    return lines


def phase_table(med: dict[str, dict[str, dict]]) -> list[str]:
    lines = [
        "| phase | naive (s) | batched (s) | ratio | naive calls | batched calls | batched tokens/s | "
        "naive tokens/s | batched in model | naive in model |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in (*PHASES, "step"):
        n, b = med["naive"][p], med["batched"][p]
        lines.append(
            f"| {p} | {n['seconds']:.1f} | {b['seconds']:.1f} | {_ratio(n['seconds'], b['seconds'])} | "
            f"{n['calls']:.0f} | {b['calls']:.0f} | {b['tokens_per_s']:.0f} | {n['tokens_per_s']:.0f} | "
            f"{b['model_share']:.0%} | {n['model_share']:.0%} |"
        )
    return lines


def graph_table(g: dict[str, dict]) -> list[str]:
    lines = ["| node | naive (s) | batched (s) | ratio |", "|---|---:|---:|---:|"]
    for node in STEP_NODES:
        n, b = g["naive"]["nodes"][node], g["batched"]["nodes"][node]
        lines.append(f"| {node} | {n:.1f} | {b:.1f} | {_ratio(n, b)} |")
    n, b = g["naive"], g["batched"]
    lines.append(f"| **whole step** | {n['seconds']:.1f} | {b['seconds']:.1f} | {_ratio(n['seconds'], b['seconds'])} |")
    lines.append("")
    lines.append(
        f"Generated tokens per second: naive {n['tokens_per_s']:.0f}, batched {b['tokens_per_s']:.0f}. "
        f"Share of the step inside model forward/backward passes: naive {n['model_share']:.0%}, "
        f"batched {b['model_share']:.0%}."
    )
    return lines


def scaling_table(points: list[dict]) -> list[str]:
    lines = [
        "| examples | reasoning tokens | naive (s) | batched (s) | ratio | naive tokens/s | batched tokens/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        n, b = p["naive"], p["batched"]
        lines.append(
            f"| {p['examples']} | {p['max_new_tokens']} | {n['seconds']:.1f} | {b['seconds']:.1f} | "
            f"{_ratio(n['seconds'], b['seconds'])} | {n['tokens_per_s']:.0f} | {b['tokens_per_s']:.0f} |"
        )
    return lines


def plot(path: Path, points: list[dict], base_examples: int, base_tokens: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, fixed_key, fixed, label in (
        (axes[0], "examples", "max_new_tokens", base_tokens, "minibatch (examples)"),
        (axes[1], "max_new_tokens", "examples", base_examples, "reasoning budget (tokens)"),
    ):
        pts = sorted((p for p in points if p[fixed_key] == fixed), key=lambda p: p[key])
        xs = [p[key] for p in pts]
        for kind, style in (("naive", "o-"), ("batched", "s-")):
            ax.plot(xs, [p[kind]["seconds"] for p in pts], style, label=kind)
        ax.set(xlabel=label, ylabel="seconds per step", xscale="log", yscale="log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        other = "reasoning tokens" if fixed_key == "max_new_tokens" else "examples"
        ax.set_title(f"{fixed} {other}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def task_spec(task: str) -> str:
    """A built-in task's name, or any task spec (``bbh:PATH``, ``jsonl:PATH``, ...)."""
    return task if ":" in task else f"builtin:{task}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--task", default="compare", help="built-in task name, or a task spec such as bbh:PATH")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on CUDA)")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--graph", action=argparse.BooleanOptionalAction, default=True, help="time a graph step")
    parser.add_argument(
        "--direct", action=argparse.BooleanOptionalAction, default=True, help="also time a step without reasoning"
    )
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True, help="time the sweeps")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--scaling-candidates", type=int, default=1, help="candidates evaluated per step in the sweeps")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "step_speed")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    rt = ModelRuntime.from_spec(args.model, device=args.device, dtype=args.dtype)
    task = load_task(task_spec(args.task))
    pool = task.split(0, max(100, *args.batch_sizes), 10, 10).train
    prompt = tuple(rt.encode_prompt("Let's think step by step."))
    rt.allowed_tokens  # noqa: B018 - computed once per process, not part of a step
    report: dict = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "device": rt.device.type,
    }

    # 1. phases at the base size
    settings = StepSettings(batch_size=args.examples, max_new_tokens=args.max_new_tokens, n_evaluate=args.candidates)
    phase_step(rt, task, settings, pool[: args.examples], prompt)  # warm-up: first-call costs are not a step's
    runs: dict[str, list] = {k: [] for k in ENGINES}
    scores: dict[str, list] = {k: [] for k in ENGINES}
    with progress_bar("phases", total=args.repeats * 2, unit="steps") as bar:
        for rep in range(args.repeats):
            for kind in ("batched", "naive"):
                with engine(kind):
                    rows, sc = phase_step(rt, task, settings, pool[: args.examples], prompt)
                runs[kind].append(rows)
                scores[kind].append(sc)
                print(
                    f"repeat {rep + 1} {kind:7s} " + "  ".join(f"{p} {rows[p]['seconds']:.1f}s" for p in PHASES),
                    file=sys.stderr,
                    flush=True,
                )
                bar.advance()
    med = {
        kind: {
            p: {k: statistics.median(r[p][k] for r in runs[kind]) for k in runs[kind][0][p]} for p in (*PHASES, "step")
        }
        for kind in ENGINES
    }
    same = all(
        [p for p, _ in a] == [p for p, _ in b] and all(abs(x - y) < 1e-3 for (_, x), (_, y) in zip(a, b, strict=True))
        for a, b in zip(scores["naive"], scores["batched"], strict=True)
    )
    report["phases"] = med
    report["same_candidates_and_scores"] = same

    lines = [
        f"Model {args.model} on {rt.device.type} ({torch.get_num_threads()} threads); built-in task {args.task}.",
        "",
        f"### Phases: {args.examples} examples, {args.max_new_tokens} reasoning tokens, {args.candidates} "
        f"candidates, median of {args.repeats}",
        "",
        *phase_table(med),
        "",
        f"Same candidates and scores from both engines: {same}.",
        "",
        f"Peak resident memory over a step: naive {med['naive']['step']['peak_rss_gib']:.2f} GiB, "
        f"batched {med['batched']['step']['peak_rss_gib']:.2f} GiB"
        + (
            f"; peak GPU memory: naive {med['naive']['step']['peak_cuda_gib']:.2f} GiB, "
            f"batched {med['batched']['step']['peak_cuda_gib']:.2f} GiB."
            if rt.device.type == "cuda"
            else "."
        ),
    ]

    # 2. direct answers: the same phases without reasoning
    if args.direct and args.max_new_tokens > 0:
        direct = StepSettings(batch_size=args.examples, max_new_tokens=0, n_evaluate=args.candidates)
        phase_step(rt, task, direct, pool[: args.examples], prompt)  # warm-up
        druns: dict[str, list] = {k: [] for k in ENGINES}
        for _ in range(args.repeats):
            for kind in ("batched", "naive"):
                with engine(kind):
                    druns[kind].append(phase_step(rt, task, direct, pool[: args.examples], prompt)[0])
        dmed = {
            kind: {
                p: {k: statistics.median(r[p][k] for r in druns[kind]) for k in druns[kind][0][p]}
                for p in (*PHASES, "step")
            }
            for kind in ENGINES
        }
        share = dmed["batched"]["step"]["seconds"] / med["batched"]["step"]["seconds"]
        ceiling = ceiling_rate(rt, int(dmed["batched"]["evaluate"]["tokens_in"]))
        ev = dmed["batched"]["evaluate"]
        ceiling_share = ev["tokens_in"] / max(ev["seconds"], 1e-9) / ceiling["rate"]
        report["direct"] = {"phases": dmed, "step_share_of_reasoning_step": share}
        report["ceiling"] = {**ceiling, "direct_evaluate_share": ceiling_share}
        lines += [
            "",
            f"### Direct answers (no reasoning): {args.examples} examples, {args.candidates} candidates, "
            f"median of {args.repeats}",
            "",
            *phase_table(dmed),
            "",
            f"A direct-answer step (batched) takes {dmed['batched']['step']['seconds']:.2f} s, "
            f"{share:.1%} of a step with {args.max_new_tokens} reasoning tokens "
            f"({med['batched']['step']['seconds']:.1f} s): {1 / share:.0f}x cheaper.",
            "",
            "Tokens the model was fed per phase (padding included), against the machine's ceiling "
            "measured in the same run:",
            "",
            *ceiling_table(dmed["batched"], ceiling),
        ]

    # 3. one whole graph step, retrieval and refinement on
    if args.graph:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            # populate the trajectory so the measured steps retrieve from it
            one_step_run(args, tmp / "store", tmp / "warmup", max_new_tokens=16, refine=False)
            g = {}
            for kind in ("batched", "naive"):
                shutil.copytree(tmp / "store", tmp / f"store-{kind}")
                g[kind] = graph_step(rt, kind, args, tmp / f"store-{kind}", tmp / f"runs-{kind}")
                print(f"graph step {kind}: {g[kind]['seconds']:.1f}s", file=sys.stderr, flush=True)
        report["graph_step"] = g
        lines += [
            "",
            f"### One graph step (retrieval and refinement on): {args.examples} examples, "
            f"{args.max_new_tokens} reasoning tokens, {args.candidates} candidates",
            "",
            *graph_table(g),
            f"Same candidates from both engines: {g['naive']['candidates'] == g['batched']['candidates']}.",
        ]

    # 4. scaling sweeps
    if args.scaling:
        sizes = [(b, args.max_new_tokens) for b in args.batch_sizes]
        sizes += [(args.examples, n) for n in args.lengths if (args.examples, n) not in sizes]
        points = []
        with progress_bar("scaling", total=len(sizes) * 2, unit="steps") as bar:
            for b, n in sizes:
                s = StepSettings(batch_size=b, max_new_tokens=n, n_evaluate=args.scaling_candidates)
                point = {"examples": b, "max_new_tokens": n}
                for kind in ("batched", "naive"):
                    with engine(kind):
                        point[kind] = phase_step(rt, task, s, pool[:b], prompt)[0]["step"]
                    bar.advance()
                points.append(point)
                print(
                    f"scaling {b} examples {n} tokens: naive {point['naive']['seconds']:.1f}s "
                    f"batched {point['batched']['seconds']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        report["scaling"] = points
        plot(args.out / "step_speed.png", points, args.examples, args.max_new_tokens)
        lines += [
            "",
            f"### Scaling: one step (reason, propose+gradient, evaluate {args.scaling_candidates} candidate(s)), "
            "single run per point",
            "",
            *scaling_table(points),
            "",
            "![time per step](step_speed.png)",
        ]

    speedup = med["naive"]["step"]["seconds"] / med["batched"]["step"]["seconds"]
    ratios = {p: med["naive"][p]["seconds"] / med["batched"][p]["seconds"] for p in PHASES}
    lines += ["", "Ratios (naive / batched): " + ", ".join(f"{p} {r:.1f}x" for p, r in ratios.items())]
    if args.graph:
        lines[-1] += f", graph step {g['naive']['seconds'] / g['batched']['seconds']:.1f}x"
    lines[-1] += f", phases together {speedup:.1f}x."
    report["ratios"] = ratios
    (args.out / "step_speed.md").write_text("\n".join(lines) + "\n")
    (args.out / "step_speed.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines))
    if "ceiling" in report:
        c = report["ceiling"]
        print(
            f"ceiling: direct evaluate {c['direct_evaluate_share']:.0%} of one batched forward's rate "
            f"({c['rate']:.0f} tokens/s on {c['tokens']} tokens)"
        )
    print(f"speedup: {speedup:.1f}x naive / batched, phases together")


if __name__ == "__main__":
    main()
