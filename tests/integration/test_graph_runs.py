"""Runs as LangGraph threads on real SQLite and the real bundled model: history, kill and resume,
fork, and the CLI's handling of bad input."""

from __future__ import annotations

import json
import signal

import pytest
from helpers import SMALL_RUN, flags, node_runs, pause_inside_step, run_cli, start_cli

from gradprompt.graph import build_graph, fork, list_runs, optimize, resume, run_values
from gradprompt.store.checkpoints import open_checkpointer
from gradprompt.store.trajectory import open_store

pytestmark = pytest.mark.model

SMALL = SMALL_RUN
SMALL_FLAGS = flags(SMALL)


def test_short_run_records_every_step(tmp_path):
    result = optimize("builtin:compare", steps=3, run_dir=tmp_path, run_id="short", **SMALL)
    assert result.steps == 3 and result.variant == "official"
    assert [h["step"] for h in result.history] == [0, 1, 2]
    for h in result.history:
        # the n_evaluate best word moves and the deletion at the slot
        assert 1 <= sum(c["source"] == "gradient" for c in h["candidates"]) <= SMALL["n_evaluate"] + 1
        assert all(c["score"] is not None and 0 <= c["accuracy"] <= 1 for c in h["candidates"])
        assert h["accepted"]["prompt"] in [c["prompt"] for c in h["candidates"]] + [h["prompt"]]
        assert h["current"]["examples"] == SMALL["train"]  # the current prompt is scored on the whole pool
        assert {"reason", "propose", "evaluate"} <= set(h["timings"])
    assert result.scores["baseline"]["dev"] is not None and result.scores["best"]["test"] is not None
    # the same history is read back from the checkpointer by a fresh graph
    with open_checkpointer(tmp_path) as saver:
        graph = build_graph(checkpointer=saver)
        config = {"configurable": {"thread_id": "short"}}
        assert graph.get_state(config).values["history"] == result.history
        steps_seen = {s.values.get("step") for s in graph.get_state_history(config)}
    assert {0, 1, 2, 3} <= steps_seen
    assert [r["run_id"] for r in list_runs(run_dir=tmp_path)] == ["short"]


@pytest.mark.heavy(20)
def test_racing_history_says_how_far_each_candidate_got_and_why(tmp_path):
    result = optimize(
        "builtin:category",
        steps=2,
        run_dir=tmp_path,
        trajectory=False,  # no retrieved candidates from other tests' runs: the race is the same every time
        refine=False,
        # alpha near 1: a candidate behind the current prompt by a single example leaves the race
        **{**SMALL, "train": 8, "n_evaluate": 4, "race_slices": (2, 4), "race_alpha": 0.99, "acceptance": "always"},
    )
    pool = 8
    seen = set()
    stops = [c for h in result.history for c in h["candidates"] if not c["finished"]]
    assert stops, "the race should stop at least one candidate for this test to check its record"
    for h in result.history:
        assert h["race_slices"] == [2, 4, pool]
        assert h["current"]["examples"] == pool
        for c in h["candidates"]:
            assert c["examples"] in (2, 4, pool)
            seen.add(c["examples"])
            if c["finished"]:
                assert c["examples"] == pool and c["stopped"] == ""
            else:
                assert c["stopped"].startswith("behind") and c["examples"] < pool
                if "current prompt" in c["stopped"]:  # it stopped because it was behind on these examples
                    assert c["only_current_right"] > c["only_new_right"]
            assert c["right"] == round(c["accuracy"] * c["examples"])
        if any(c["finished"] for c in h["candidates"]):
            assert h["accepted"]["reason"].startswith("always")
            assert h["changed"]  # always moves, and the current prompt is never its own candidate
    assert pool in seen


@pytest.mark.heavy(50)
def test_killed_run_resumes_to_the_same_result(tmp_path):
    # each run gets a store of its own, so the second cannot retrieve what the first recorded
    args = [
        "optimize",
        "--task",
        "builtin:compare",
        "--steps",
        "2",
        "--seed",
        "5",
        *SMALL_FLAGS,
        "--store",
        str(tmp_path / "store-killed"),
    ]
    proc = start_cli(*args, "--run-id", "killed", run_dir=tmp_path)
    try:
        pause_inside_step(proc, 1, lambda: run_values("killed", run_dir=tmp_path))  # step 0 finished, step 1 under way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = run_values("killed", run_dir=tmp_path)
    assert not before.get("final")
    resumed = run_cli("resume", "killed", "--json", run_dir=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads(resumed.stdout)
    # resuming continued from the last checkpoint: no node ran twice, and step 0 (finished before
    # the kill) kept its record, timings included, instead of being run again
    assert set(node_runs("killed", run_dir=tmp_path).values()) == {1}
    assert got["history"][0] == before["history"][0]

    # the same run straight through, in a fresh process as well (a rollout cache and a store of its
    # own: nothing is shared with the killed run)
    args[-1] = str(tmp_path / "store-straight")
    plain_run = run_cli(*args, "--run-id", "straight", "--json", run_dir=tmp_path / "elsewhere")
    assert plain_run.returncode == 0, plain_run.stderr
    straight = json.loads(plain_run.stdout)
    assert got["steps"] == straight["steps"] == 2
    assert got["best_prompt_ids"] == straight["best_prompt_ids"]
    assert [h["step"] for h in got["history"]] == [0, 1]
    assert [h["candidates"] for h in got["history"]] == [h["candidates"] for h in straight["history"]]
    assert [h["accepted"] for h in got["history"]] == [h["accepted"] for h in straight["history"]]
    # the trajectory holds each step's candidates once, whether or not the run was interrupted
    killed = open_store(str(tmp_path / "store-killed")).records(run_id="killed")
    plain = open_store(str(tmp_path / "store-straight")).records(run_id="straight")
    assert sorted((r.step, r.source, r.text) for r in killed) == sorted((r.step, r.source, r.text) for r in plain)
    # and the rollout cache holds the same (prompt, example) results, each once
    assert _cached_rollouts(tmp_path) == _cached_rollouts(tmp_path / "elsewhere")


def _cached_rollouts(run_dir) -> dict:
    import sqlite3

    from gradprompt.store.checkpoints import ROLLOUTS_DB

    with sqlite3.connect(run_dir / ROLLOUTS_DB) as conn:
        rows = conn.execute("SELECT prefix, key, value FROM store").fetchall()
    assert len({(p, k) for p, k, _ in rows}) == len(rows) and rows
    return {(p, k): json.loads(v)["correct"] for p, k, v in rows}


def test_fork_with_an_edited_prompt(tmp_path):
    original = optimize("builtin:compare", steps=2, run_dir=tmp_path, run_id="orig", **SMALL)
    before = run_values("orig", run_dir=tmp_path)
    new_id = fork("orig", 1, "Compare the two numbers.", run_dir=tmp_path, steps=2)
    forked = resume(new_id, run_dir=tmp_path)
    assert forked.history[0] == original.history[0]
    assert forked.history[1]["prompt_text"] == "Compare the two numbers."
    assert forked.steps == 2
    after = run_values("orig", run_dir=tmp_path)
    assert after["history"] == before["history"] and after["final"] == before["final"]
    parent = {r["run_id"]: r["parent"] for r in list_runs(run_dir=tmp_path)}[new_id]
    assert parent["run_id"] == "orig" and parent["step"] == 1


@pytest.mark.heavy(20)
def test_ctrl_c_stops_at_a_node_boundary_and_resumes(tmp_path):
    args = ["optimize", "--task", "builtin:compare", "--steps", "2", *SMALL_FLAGS]
    proc = start_cli(*args, "--run-id", "ctrlc", run_dir=tmp_path)
    pause_inside_step(proc, 1, lambda: run_values("ctrlc", run_dir=tmp_path))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 130
    assert "gradprompt resume ctrlc" in err
    stopped = run_values("ctrlc", run_dir=tmp_path)
    assert stopped["next"] and not stopped.get("final")
    finished = resume("ctrlc", run_dir=tmp_path)
    assert finished.steps == 2 and [h["step"] for h in finished.history] == [0, 1]
