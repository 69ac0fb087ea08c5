"""Human approval of updates: from Python (approver callback and Command(resume=...)) and from the
CLI (runs pending, approve, resume), with each decision kept in the history and the trajectory."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import SMALL_RUN, call_cli, flags, run_cli, unavailable
from langgraph.types import Command

from gradprompt.graph import build_graph, optimize
from gradprompt.graph.api import make_settings
from gradprompt.store.checkpoints import open_checkpointer
from gradprompt.store.trajectory import TrajectoryStore

pytestmark = pytest.mark.model

SMALL = {**SMALL_RUN, "refine": False}
EDITED = "Compare both numbers, then answer."


@pytest.mark.heavy(20)
def test_approve_reject_and_edit_from_python(tmp_path):
    requests = []
    answers = iter([{"action": "approve"}, {"action": "reject"}, {"action": "edit", "prompt": EDITED}])

    def approver(request):
        requests.append(request)
        return next(answers)

    store = str(tmp_path / "store")
    result = optimize(
        "builtin:compare", steps=3, human_approval=True, approver=approver, run_dir=tmp_path, store=store, **SMALL
    )
    assert [r["step"] for r in requests] == [0, 1, 2]
    for r in requests:
        assert {"current", "proposed", "diff", "alternatives", "edit_limit"} <= set(r)
        assert r["current"]["score"] is not None and r["proposed"]["score"] is not None
    h0, h1, h2 = result.history
    assert h0["accepted"]["text"] == requests[0]["proposed"]["text"] and h0["accepted"]["by"] == "human"
    assert h1["accepted"]["text"] == h1["prompt_text"] and not h1["changed"] and h1["accepted"]["by"] == "human"
    assert h2["accepted"]["text"] == EDITED and h2["accepted"]["source"] == "human"
    assert h2["accepted"]["score"] is not None  # the edited prompt was scored before it was accepted
    humans = TrajectoryStore(store).records(run_id=result.run_id, decided_by="human")
    assert {r.step for r in humans} == {0, 1, 2}
    edited = [r for r in humans if r.source == "human"]
    assert [r.text for r in edited] == [EDITED] and edited[0].accepted


def test_resume_with_command_on_the_compiled_graph(tmp_path):
    settings = make_settings("builtin:compare", steps=1, human_approval=True, store=str(tmp_path / "s"), **SMALL)
    config = {"configurable": {"thread_id": "cmd"}}
    with open_checkpointer(tmp_path) as saver:
        graph = build_graph(checkpointer=saver)
        first = graph.invoke({"run_id": "cmd", "settings": settings.model_dump()}, config)
        (pending,) = first["__interrupt__"]
        assert pending.value["step"] == 0
        assert graph.get_state(config).next == ("approve",)
        final = graph.invoke(Command(resume={"action": "reject"}), config)
    assert final["history"][0]["accepted"]["prompt"] == final["history"][0]["prompt"]
    assert final["final"]["best"]["dev_accuracy"] is not None


@pytest.mark.heavy(35)
def test_cli_pending_approve_and_resume(tmp_path):
    started = run_cli(
        "optimize",
        "--task",
        "builtin:compare",
        "--steps",
        "1",
        "--approve",
        "--run-id",
        "waits",
        *flags(SMALL),
        run_dir=tmp_path,
    )
    assert started.returncode == 3, started.stderr
    assert "gradprompt approve waits" in started.stderr
    pending = call_cli("runs", "pending", "--json", run_dir=tmp_path)
    (entry,) = json.loads(pending.stdout)
    assert entry["run_id"] == "waits" and entry["request"]["step"] == 0 and entry["answered"] is None
    bad = call_cli("approve", "waits", "--action", "edit", run_dir=tmp_path)
    assert bad.returncode == 2 and "needs the new prompt" in bad.stderr
    ok = call_cli("approve", "waits", "--action", "edit", "--prompt", EDITED, run_dir=tmp_path)
    assert ok.returncode == 0, ok.stderr
    resumed = run_cli("resume", "waits", "--json", run_dir=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (step,) = json.loads(resumed.stdout)["history"]
    assert step["accepted"]["text"] == EDITED and step["accepted"]["by"] == "human"
    assert json.loads(call_cli("runs", "pending", "--json", run_dir=tmp_path).stdout) == []
    again = call_cli("approve", "waits", "--action", "approve", run_dir=tmp_path)
    assert again.returncode == 2 and "not waiting" in again.stderr


@pytest.mark.heavy(30)
def test_optimize_asks_at_the_terminal_with_the_display_paused(tmp_path):
    """`optimize --approve` in a pseudo-terminal: each request is shown with its change spelled out
    without colour, nothing redraws over the question while it waits, and the answers typed
    (edit, reject, approve) are applied before the run goes on to its end."""
    try:
        import pexpect
    except ImportError:
        unavailable("no pexpect here to drive a pseudo-terminal", setup_provides=True)
    from helpers import ENV

    from gradprompt.graph import run_values

    args = ["-m", "gradprompt.graph.cli", "optimize", "--task", "builtin:compare", "--steps", "3", "--approve"]
    args += [*flags({**SMALL, "trajectory": False}), "--run-id", "asked", "--run-dir", str(tmp_path)]
    child = pexpect.spawn(
        sys.executable,
        args,
        env={**ENV, "NO_COLOR": "1", "COLUMNS": "160"},
        encoding="utf-8",
        timeout=600,
        dimensions=(50, 160),
    )
    try:
        seen = []
        for answer in (["edit", EDITED], ["reject"], ["approve"]):
            child.expect(r"approve, reject or edit\?.*: ")
            seen.append(child.before)
            with pytest.raises(pexpect.TIMEOUT):  # the bar does not redraw over the question
                child.read_nonblocking(size=1000, timeout=2)
            child.sendline(answer[0])
            if answer[0] == "edit":
                child.expect("your prompt.*: ")
                child.sendline(answer[1])
        child.expect(pexpect.EOF)
        tail = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, tail
    for step, text in enumerate(seen):
        assert f"Step {step}: proposed update" in text
        change = [line for line in text.splitlines() if "change:" in line]
        assert change and ("[-" in change[-1] or "{+" in change[-1]), text
    assert "final" in tail and "95% CI" in tail
    h0, h1, h2 = run_values("asked", run_dir=tmp_path)["history"]
    assert h0["accepted"]["text"] == EDITED and h0["accepted"]["source"] == "human"
    assert not h1["changed"] and h1["accepted"]["by"] == "human"
    assert h2["accepted"]["by"] == "human" and h2["accepted"]["source"] != "human"
