"""Deciding on a proposed update at the terminal: the change shown twice (in colour, and as
``[-removed-]{+added+}`` text that survives a log, a screen reader or a pasted transcript), the
scores, the choices. The live progress display is paused while the question is on screen."""

from __future__ import annotations

from rich.console import Console
from rich.prompt import Prompt
from rich.text import Text

from gradprompt.nodes.runtime.progress_bars import paused


def _score(item: dict) -> str:
    acc, n, lp = item.get("accuracy"), item.get("examples"), item.get("gold_logprob")
    if acc is None:
        return "not evaluated"
    where = f" on {n} pool examples" if n else ""
    return f"accuracy {acc:.2f}{where}" + (f", gold log-prob {lp:.2f}" if lp is not None else "")


def _diff_text(diff: list[dict]) -> Text:
    """The word diff with its markers, removed words also red and struck, added ones green."""
    text = Text()
    for part in diff:
        words = []
        if part["op"] == "equal":
            words.append((part["old"], ""))
        else:
            if part["old"]:
                words.append((f"[-{part['old']}-]", "red strike"))
            if part["new"]:
                words.append((f"{{+{part['new']}+}}", "bold green"))
        for word, style in words:
            if word:
                if text.plain:
                    text.append(" ")
                text.append(word, style=style)
    return text


def render_request(request: dict) -> Text:
    """The approval request: both prompts in full, and the change between them marked
    ``[-removed-]{+added+}`` (and coloured on a colour terminal), so it reads the same in a log."""
    text = Text()
    text.append(f"Step {request['step']}: proposed update", style="bold")
    if request.get("edit_limit") is not None:
        text.append(f" (edit limit {request['edit_limit']} words)")
    text.append("\n  current:  ")
    text.append(repr(request["current"]["text"]))
    text.append(f"  [{_score(request['current'])}]\n  proposed: ")
    text.append(repr(request["proposed"]["text"]))
    text.append(f"  [{request['proposed'].get('source')}, {_score(request['proposed'])}]")
    text.append("\n  change:   ")
    text.append(_diff_text(request["diff"]))
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
