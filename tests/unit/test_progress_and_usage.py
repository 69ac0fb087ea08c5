"""Progress bars (drawn on a terminal, silent otherwise) and the model-usage counters, on the tiny
in-process model."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from gradprompt.nodes.greater import rollout
from gradprompt.nodes.runtime import decoding, progress_bars
from gradprompt.nodes.tasks import builtin_task


@pytest.fixture
def terminal():
    buf = io.StringIO()
    progress_bars.use_console(Console(file=buf, force_terminal=True, width=160))
    yield buf
    progress_bars.use_console(None)


def test_bars_draw_on_a_terminal_and_nest(terminal):
    with progress_bars.progress_bar("outer loop", total=3, unit="tasks", keep=True) as outer:
        with progress_bars.progress_bar("inner work", total=2, unit="rows") as inner:
            inner.advance(2)
        outer.advance()
    text = terminal.getvalue()
    assert "outer loop" in text and "inner work" in text
    assert "1/3" in text  # the kept outer bar's last state


def test_a_paused_display_draws_nothing_until_it_resumes(terminal):
    """What keeps a question asked at the terminal on screen: while paused, the live display
    neither redraws on its own (it would every 0.1 s) nor draws what the bars report."""
    import time

    with progress_bars.progress_bar("searching", total=10, unit="steps") as bar:
        with progress_bars.paused():
            before = terminal.getvalue()
            for _ in range(5):
                bar.advance()
                time.sleep(0.1)
            assert terminal.getvalue() == before  # nothing at all was written while paused
        bar.advance()
        deadline = time.time() + 60
        while "6/10" not in terminal.getvalue() and time.time() < deadline:
            time.sleep(0.05)  # the resumed display draws the bar's state on its next refresh
        assert "6/10" in terminal.getvalue()


def test_bars_are_silent_when_quiet_or_not_a_terminal(terminal):
    with progress_bars.quiet(), progress_bars.progress_bar("hidden", total=2) as bar:
        bar.advance()
    assert terminal.getvalue() == ""
    progress_bars.use_console(Console(file=io.StringIO(), force_terminal=False))
    assert not progress_bars.shown()


def test_rollout_reports_every_row_and_counts_usage(tiny_rt, terminal, monkeypatch):
    done = []
    original = decoding.reason_and_answer

    def spy(*args, on_done=None, **kwargs):
        def both(n):
            done.append(n)
            on_done(n)

        return original(*args, on_done=both, **kwargs)

    monkeypatch.setattr("gradprompt.nodes.runtime.model_runtime.reason_and_answer", spy)
    task = builtin_task("compare")
    examples = task.examples[:5]
    prompts = [tuple(tiny_rt.encode_prompt("Think step by step.")), ()]
    before = tiny_rt.usage.snapshot()
    out = rollout(tiny_rt, task.answer_format, examples, prompts, 12, label="dev evaluation")
    used = tiny_rt.usage.snapshot() - before
    assert sum(done) == len(prompts) * len(examples)
    assert "dev evaluation" in terminal.getvalue()
    generated = sum(len(r) for ro in out for r in ro.reasonings)
    answers_at_most = len(prompts) * len(examples) * task.answer_format.max_answer_tokens
    assert generated <= used.tokens_generated <= generated + answers_at_most
    assert used.calls >= 1 and used.tokens_in > used.tokens_generated and used.model_seconds > 0


def test_backward_passes_are_counted(tiny_rt):
    from gradprompt.nodes.greater import forced_rows
    from gradprompt.nodes.runtime.scoring import token_chunks, window_gradients

    task = builtin_task("compare")
    examples = task.examples[:3]
    prompt = tuple(tiny_rt.encode_prompt("Think step by step."))
    reasonings = rollout(tiny_rt, task.answer_format, examples, [prompt], 6)[0].reasonings
    rows = forced_rows(tiny_rt, task.answer_format, examples, prompt, reasonings)
    before = tiny_rt.usage.snapshot()
    window_gradients(tiny_rt, rows, [1], temperature=0.2, nll_weight=0.2)
    used = tiny_rt.usage.snapshot() - before
    # per chunk of rows: the shared prefix without gradient, then the rest forward and backward
    chunks = len(token_chunks(rows, tiny_rt.grad_batch_tokens, [r.prompt[0] + 1 for r in rows]))
    assert used.backward_calls == chunks and used.calls == 2 * chunks
