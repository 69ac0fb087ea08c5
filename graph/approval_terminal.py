"""Deciding on a proposed update at the terminal: the change shown twice (in colour, and as
``[-removed-]{+added+}`` text that survives a log, a screen reader or a pasted transcript), the
scores, the choices. The live progress display is paused while the question is on screen."""

from __future__ import annotations

from rich.console import Console
from rich.prompt import Prompt
from rich.text import Text

from nodes.runtime.progress_bars import paused


def _score(item: dict) -> str:
    acc, n, lp = item.get("accuracy"), item.get("examples"), item.get("gold_logprob")
    if acc is None:
        return "not evaluated"
    where = f" on {n} pool examples" if n else ""
    return f"accuracy {acc:.2f}{where}" + (f", gold log-prob {lp:.2f}" if lp is not None else "")


def plain_diff(diff: list[dict]) -> str:
    """The word diff as text: removed words as ``[-old-]``, added ones as ``{+new+}``."""
    words = []
    for part in diff:
        if part["op"] == "equal":
            words.append(part["old"])
            continue
        if part["old"]:
            words.append(f"[-{part['old']}-]")
        if part["new"]:
            words.append(f"{{+{part['new']}+}}")
    return " ".join(w for w in words if w)


def render_request(request: dict) -> Text:
    """The approval request: removed words red and struck, added words green, and the same change
    spelled out without colour on its own line."""
    text = Text()
    text.append(f"Step {request['step']}: proposed update", style="bold")
    if request.get("edit_limit") is not None:
        text.append(f" (edit limit {request['edit_limit']} words)")
    text.append("\n  current:  ")
    text.append(repr(request["current"]["text"]))
    text.append(f"  [{_score(request['current'])}]\n  proposed: ")
    for part in request["diff"]:
        if part["op"] == "equal":
            text.append(part["old"] + " ")
            continue
        if part["old"]:
            text.append(part["old"] + " ", style="red strike")
        if part["new"]:
            text.append(part["new"] + " ", style="bold green")
    text.append(f" [{request['proposed'].get('source')}, {_score(request['proposed'])}]")
    text.append(f"\n  change:   {plain_diff(request['diff'])}")
    for alt in request.get("alternatives", []):
        text.append(f"\n  alternative ({alt['source']}): {alt['text']!r} [{_score(alt)}]")
    return text


def terminal_approver(console: Console | None = None):
    """An approver that asks at the terminal, with the progress display paused meanwhile."""
    console = console or Console(stderr=True)

    def ask(request: dict) -> dict:
        with paused():
            console.print()
            console.print(render_request(request))
            action = Prompt.ask(
                "approve, reject or edit?", choices=["approve", "reject", "edit"], default="approve", console=console
            )
            if action != "edit":
                return {"action": action}
            prompt = Prompt.ask("your prompt", default=request["proposed"]["text"], console=console)
            return {"action": "edit", "prompt": prompt}

    return ask
