"""Draw a run report (matplotlib) and write it as one self-contained HTML file or as Markdown with
PNG files beside it.

The HTML embeds its pictures as data URIs so it can be mailed or attached to a ticket as one file;
the Markdown form suits a repository or a notebook.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from gradprompt.graph.run_report import RunReport
from gradprompt.graph.summary import summary_lines

FIGURES = {
    "scores": "Score per step",
    "edit_limit": "Edit limit per step",
    "sources": "Candidate sources",
    "timings": "Time per node",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_steps(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _fig_scores(plt, rep: RunReport):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [r.step for r in rep.steps]
    ax1.plot(xs, [r.current_accuracy for r in rep.steps], "o-", label="current prompt (pool)")
    ax1.plot(xs, [r.accepted_accuracy for r in rep.steps], "s--", label="accepted update (examples it ran)")
    if rep.dev_points:
        dx, dy = zip(*rep.dev_points, strict=True)
        ax1.plot(dx, dy, "D", color="black", label="accepted prompt on dev")
    ax1.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title="accuracy")
    ax1.legend(fontsize=7)
    ax2.plot(xs, [r.current_score for r in rep.steps], "o-", label="current prompt")
    ax2.plot(xs, [r.accepted_score for r in rep.steps], "s--", label="accepted update")
    ax2.set(xlabel="step", ylabel="score (lower is better)", title="score on the pool")
    ax2.legend(fontsize=7)
    _integer_steps(ax1, ax2)
    return fig


def _fig_edit_limit(plt, rep: RunReport):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    xs = [r.step for r in rep.steps]
    ax.plot(xs, [r.edit_limit for r in rep.steps], "o-", label="edit limit (words)")
    ax.bar(xs, [r.words_changed for r in rep.steps], alpha=0.5, label="words changed")
    ax.set(xlabel="step", ylabel="words")
    ax.legend(fontsize=7)
    _integer_steps(ax)
    return fig


def _fig_sources(plt, rep: RunReport):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(rep.sources)
    ev = [rep.sources[n]["raced"] for n in names]
    ac = [rep.sources[n]["accepted"] for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], ev, 0.4, label="raced")
    ax.bar([x + 0.2 for x in xs], ac, 0.4, label="accepted")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel("candidates")
    ax.legend(fontsize=7)
    return fig


def _fig_timings(plt, rep: RunReport):
    fig, ax = plt.subplots(figsize=(7, 3.4))
    nodes = list(dict.fromkeys(n for r in rep.steps for n in r.timings))
    xs = [r.step for r in rep.steps]
    bottom = [0.0] * len(xs)
    for n in nodes:
        vals = [r.timings.get(n, 0.0) for r in rep.steps]
        ax.bar(xs, vals, bottom=bottom, label=n)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set(xlabel="step", ylabel="seconds")
    ax.legend(fontsize=7, ncol=3)
    _integer_steps(ax)
    return fig


def draw(rep: RunReport) -> dict[str, bytes]:
    """Each figure as PNG bytes."""
    plt = _pyplot()
    out = {}
    for name, fn in (
        ("scores", _fig_scores),
        ("edit_limit", _fig_edit_limit),
        ("sources", _fig_sources),
        ("timings", _fig_timings),
    ):
        fig = fn(plt, rep)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _marked_diff(diff: list[dict], removed: tuple[str, str], added: tuple[str, str], escape) -> str:
    """A word diff as text, removed and added words wrapped in the format's markers."""
    parts = []
    for d in diff:
        if d["op"] == "equal":
            parts.append(escape(d["old"]))
            continue
        if d["old"]:
            parts.append(f"{removed[0]}{escape(d['old'])}{removed[1]}")
        if d["new"]:
            parts.append(f"{added[0]}{escape(d['new'])}{added[1]}")
    return " ".join(parts)


def _num(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _rate(s: dict) -> str:
    return "-" if not s["raced"] else f"{s['accepted'] / s['raced']:.0%}"


def _summary_rows(rep: RunReport) -> list[tuple[str, str]]:
    st, final = rep.settings, rep.final
    base, best = final.get("baseline", {}), final.get("best", {})
    rows = [
        ("run", rep.run_id),
        ("task", st["task"]),
        ("model", st["model"]),
        ("variant", st["variant"]),
        ("status", f"{rep.status}, {len(rep.steps)} of {st['steps']} steps"),
        ("initial prompt", rep.baseline),
    ]
    if final:
        rows += [
            ("chosen prompt", best.get("text", "")),
            ("dev accuracy", f"{_num(base.get('dev_accuracy'))} → {_num(best.get('dev_accuracy'))}"),
            ("test accuracy", f"{_num(base.get('test_accuracy'))} → {_num(best.get('test_accuracy'))}"),
            ("examples", f"{final.get('dev_examples')} dev, {final.get('test_examples')} test"),
        ]
        rows += [(f"final choice {i}", line) for i, line in enumerate(summary_lines(final)[3:], start=1)]
    if rep.rejected:
        rows.append(("candidates rejected", ", ".join(f"{k}: {v}" for k, v in sorted(rep.rejected.items()))))
    return rows


def _step_table(rep: RunReport) -> tuple[list[str], list[list[str]]]:
    head = ["step", "pos", "pool acc", "score", "accepted acc", "accepted score", "dev acc", "source", "by"]
    head += ["edit limit", "words changed", "candidates", "seconds"]
    rows = [
        [
            str(r.step),
            str(r.position),
            _num(r.current_accuracy),
            _num(r.current_score),
            _num(r.accepted_accuracy),
            _num(r.accepted_score),
            _num(r.dev_accuracy),
            r.source,
            r.by,
            "-" if r.edit_limit is None else str(r.edit_limit),
            str(r.words_changed),
            str(r.candidates),
            f"{sum(r.timings.values()):.1f}",
        ]
        for r in rep.steps
    ]
    return head, rows


def _source_table(rep: RunReport) -> tuple[list[str], list[list[str]]]:
    head = ["source", "offered", "raced", "finished the pool", "accepted", "accepted of raced"]
    rows = [
        [n, str(s["offered"]), str(s["raced"]), str(s["finished"]), str(s["accepted"]), _rate(s)]
        for n, s in rep.sources.items()
    ]
    return head, rows


def _node_table(rep: RunReport) -> tuple[list[str], list[list[str]]]:
    total = sum(rep.node_seconds.values()) or 1.0
    items = sorted(rep.node_seconds.items(), key=lambda kv: -kv[1])
    return ["node", "seconds", "share"], [[n, f"{s:.1f}", f"{s / total:.0%}"] for n, s in items]


# ----- HTML --------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}del{background:#fdd;text-decoration:line-through}ins{background:#dfd;text-decoration:none}
img{max-width:100%}code{background:#f6f6f6;padding:1px 4px}"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _html_diff(diff: list[dict]) -> str:
    return _marked_diff(diff, ("<del>", "</del>"), ("<ins>", "</ins>"), html.escape)


def to_html(rep: RunReport, figures: dict[str, bytes]) -> str:
    def img(name: str) -> str:
        data = base64.b64encode(figures[name]).decode()
        return f'<h2>{FIGURES[name]}</h2><img alt="{FIGURES[name]}" src="data:image/png;base64,{data}">'

    evolution = "".join(
        f"<li>step {e['step']} ({html.escape(e['source'])}, by {html.escape(e['by'])}, score "
        f"{_num(e['score_before'])} → {_num(e['score_after'])}): {_html_diff(e['diff'])}</li>"
        for e in rep.evolution
    )
    summary = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _summary_rows(rep))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>gradprompt run {html.escape(rep.run_id)}</title>"
        f"<style>{_CSS}</style></head><body><h1>Run {html.escape(rep.run_id)}</h1>"
        f"<h2>Summary</h2><table>{summary}</table>"
        + img("scores")
        + "<h2>Steps</h2>"
        + _html_table(*_step_table(rep))
        + "<h2>Prompt evolution</h2>"
        + (f"<ol>{evolution}</ol>" if evolution else "<p>No step changed the prompt.</p>")
        + img("edit_limit")
        + img("sources")
        + _html_table(*_source_table(rep))
        + img("timings")
        + _html_table(*_node_table(rep))
        + "</body></html>"
    )


# ----- Markdown ----------------------------------------------------------------------------------


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_diff(diff: list[dict]) -> str:
    return _marked_diff(diff, ("~~", "~~"), ("**", "**"), str)


def to_markdown(rep: RunReport, image_names: dict[str, str]) -> str:
    def img(name: str) -> str:
        return f"## {FIGURES[name]}\n\n![{FIGURES[name]}]({image_names[name]})\n"

    evolution = "\n".join(
        f"{i}. step {e['step']} ({e['source']}, by {e['by']}, score {_num(e['score_before'])} → "
        f"{_num(e['score_after'])}): {_md_diff(e['diff'])}"
        for i, e in enumerate(rep.evolution, 1)
    )
    parts = [
        f"# Run {rep.run_id}\n",
        "## Summary\n",
        _md_table(["", ""], [[k, v] for k, v in _summary_rows(rep)]) + "\n",
        img("scores"),
        "## Steps\n",
        _md_table(*_step_table(rep)) + "\n",
        "## Prompt evolution\n",
        (evolution or "No step changed the prompt.") + "\n",
        img("edit_limit"),
        img("sources"),
        _md_table(*_source_table(rep)) + "\n",
        img("timings"),
        _md_table(*_node_table(rep)) + "\n",
    ]
    return "\n".join(parts)


def write_report(rep: RunReport, out: Path, fmt: str = "html") -> Path:
    """Write the report; returns the main file (``report.html`` or ``report.md``)."""
    out.mkdir(parents=True, exist_ok=True)
    figures = draw(rep)
    if fmt == "html":
        path = out / "report.html"
        path.write_text(to_html(rep, figures), encoding="utf-8")
        return path
    names = {}
    for name, data in figures.items():
        names[name] = f"{name}.png"
        (out / names[name]).write_bytes(data)
    path = out / "report.md"
    path.write_text(to_markdown(rep, names), encoding="utf-8")
    return path
