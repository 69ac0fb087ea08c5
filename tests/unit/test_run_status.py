"""What `runs list` / `runs show` say a run is doing, and `runs rm`, on the tiny model: a run held
by another process reads running with its pid, one at an approval interrupt waiting for approval,
one whose node raised failed with the error's first line; removal takes checkpoints, unshared
cache rows and the folder, refuses a held run, and a dry run changes nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import TINY_MODEL_RUN

import gradprompt.nodes.reason
import gradprompt.nodes.session
from gradprompt.errors import GradpromptError
from gradprompt.graph import fork, list_runs, optimize, run_values
from gradprompt.graph.api import ApprovalPending
from gradprompt.graph.cli import main
from gradprompt.graph.removal import remove_runs

ROOT = Path(__file__).resolve().parents[2]
SMALL = TINY_MODEL_RUN


def _cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, capsys.readouterr().out


def _hold(run_dir: Path, run_id: str) -> subprocess.Popen:
    """Another process holding the run, as a process driving it does."""
    code = textwrap.dedent(f"""
        import sys, time
        from gradprompt.store.checkpoints import open_runs
        with open_runs(sys.argv[1]).lock({run_id!r}, "resume"):
            print("held", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_each_status_reads_what_the_run_is_doing(tmp_path, on_tiny_model, monkeypatch, capsys):
    runs = tmp_path / "runs"
    optimize("builtin:compare", steps=1, run_dir=runs, run_id="done", **SMALL)
    fork("done", 0, run_dir=runs, new_id="held")  # a run that stopped at the start of step 0
    with pytest.raises(ApprovalPending):
        optimize("builtin:compare", steps=1, run_dir=runs, run_id="asks", human_approval=True, **SMALL)

    def broken(*args, **kwargs):
        raise RuntimeError("the model went away\nsecond line of the error")

    with monkeypatch.context() as m:
        m.setattr(gradprompt.nodes.reason, "rollouts", broken)
        with pytest.raises(RuntimeError):
            optimize("builtin:compare", steps=1, run_dir=runs, run_id="broken", **SMALL)

    holder = _hold(runs, "held")
    try:
        listed = {r["run_id"]: r for r in list_runs(run_dir=runs)}
        code, text = _cli(capsys, "runs", "list", "--run-dir", str(runs))
        _, as_json = _cli(capsys, "runs", "list", "--json", "--run-dir", str(runs))
        _, shown = _cli(capsys, "runs", "show", "broken", "--run-dir", str(runs))
    finally:
        holder.kill()
        holder.wait()
    assert {k: r["status"] for k, r in listed.items()} == {
        "done": "finished",
        "held": "running",
        "asks": "waiting for approval",
        "broken": "failed",
    }
    assert listed["held"]["status_text"].startswith(f"running (pid {holder.pid} on ")
    assert "since 20" in listed["held"]["status_text"]
    assert listed["broken"]["status_text"] == "failed: RuntimeError: the model went away"
    assert listed["asks"]["status_text"] == "waiting for approval of step 0"
    assert code == 0
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert lines["held"].endswith(listed["held"]["status_text"])
    assert lines["broken"].endswith("failed: RuntimeError: the model went away")
    assert lines["asks"].endswith("waiting for approval of step 0")
    assert lines["done"].endswith("finished")
    assert {r["run_id"]: r["status"] for r in json.loads(as_json)} == {k: r["status"] for k, r in listed.items()}
    assert "status: failed: RuntimeError: the model went away" in shown
    # once the holder is gone the run is resumable, and says so
    assert run_values("held", run_dir=runs)["status_text"] == "stopped (resumable)"
    assert run_values("broken", run_dir=runs)["status_text"].startswith("failed")


def test_rm_removes_checkpoints_cache_rows_and_folder_and_refuses_a_held_run(tmp_path, on_tiny_model, capsys):
    runs = tmp_path / "runs"
    optimize("builtin:compare", steps=1, run_dir=runs, run_id="one", **SMALL)
    optimize("builtin:compare", steps=1, run_dir=runs, run_id="two", **SMALL)
    optimize("builtin:arithmetic", steps=1, run_dir=runs, run_id="other", **SMALL)

    def counts() -> dict:
        with sqlite3.connect(runs / "checkpoints.sqlite") as db:
            threads = dict(db.execute("SELECT thread_id, count(*) FROM checkpoints GROUP BY thread_id").fetchall())
        with sqlite3.connect(runs / "rollouts.sqlite") as db:
            rows = dict(db.execute("SELECT prefix, count(*) FROM store GROUP BY prefix").fetchall())
        return {"threads": threads, "cache": rows, "folders": sorted(p.name for p in runs.iterdir() if p.is_dir())}

    before = counts()
    assert set(before["threads"]) == {"one", "two", "other"} and len(before["cache"]) == 2

    code, text = _cli(capsys, "runs", "rm", "one", "other", "--dry-run", "--run-dir", str(runs))
    assert code == 0 and "would remove" in text
    assert counts() == before  # a dry run changes nothing

    holder = _hold(runs, "other")
    try:
        with pytest.raises(GradpromptError, match=rf"run other is in use.*pid {holder.pid}"):
            remove_runs(["one", "other"], run_dir=runs)
    finally:
        holder.kill()
        holder.wait()
    assert counts() == before  # refused as a whole: "one" was not removed either

    out = {r["run_id"]: r for r in remove_runs(["one", "other"], run_dir=runs)}
    after = counts()
    assert set(after["threads"]) == {"two"}
    assert after["folders"] == ["two"]
    # "one" shares its cache rows with "two" (same task and settings): they stay; "other"'s go
    assert out["one"]["cache_rows"] == 0 and out["one"]["cache_kept"].startswith("shared with two")
    assert out["other"]["cache_rows"] > 0 and out["one"]["checkpoints"] == before["threads"]["one"]
    assert list(after["cache"].values()) == [before["cache"][p] for p in after["cache"]]
    assert len(after["cache"]) == 1
    assert [r["run_id"] for r in list_runs(run_dir=runs)] == ["two"]
    with pytest.raises(GradpromptError, match="unknown run id 'one'"):
        remove_runs(["one"], run_dir=runs)


def test_runs_show_history_prints_examples_from_the_rollout_cache(tmp_path, on_tiny_model, capsys):
    from gradprompt.graph.run_index import step_examples

    runs = tmp_path / "runs"
    result = optimize("builtin:compare", steps=2, run_dir=runs, run_id="seen", **SMALL)
    shown = step_examples("seen", 2, run_dir=runs)
    assert sorted(shown) == [0, 1]
    from gradprompt.nodes.greater import rollout
    from gradprompt.nodes.session import selection_pool, session

    sess = session(run_values("seen", run_dir=runs)["settings"])
    pool = selection_pool(sess)[:2]
    for h in result.history:
        examples = shown[h["step"]]
        assert [ex["question"] for ex in examples] == [e.question for e in pool]
        # what is shown is what the model gives for the step's prompt, rolled out afresh here
        (fresh,) = rollout(sess.rt, sess.readout, pool, [tuple(h["prompt"])], SMALL["max_new_tokens"])
        assert [ex["answer"] for ex in examples] == fresh.answers
        assert [ex["correct"] for ex in examples] == fresh.correct
        assert [ex["reasoning"] for ex in examples] == [sess.rt.decode(r) for r in fresh.reasonings]
    _, text = _cli(capsys, "runs", "show", "seen", "--history", "--show", "2", "--run-dir", str(runs))
    assert text.count("read as: ") == 4 and text.count("(gold ") == 4


def test_evaluate_shows_examples_and_compares_prompts_paired(tmp_path, on_tiny_model, capsys):
    from gradprompt.graph.evaluation import evaluate_prompts
    from gradprompt.nodes.decisions import paired_gain

    args = ["evaluate", "--task", "builtin:compare", "--dev", "6", "--max-new-tokens", "3", "--show", "3"]
    code, text = _cli(capsys, *args, "--prompt", "Answer.", "--prompt", "Think first, then answer.")
    assert code == 0
    out = evaluate_prompts("builtin:compare", ["Answer.", "Think first, then answer."], dev=6, max_new_tokens=3)
    first, second = out["prompts"]
    for i, p in enumerate(out["prompts"], start=1):
        low, high = p["ci95"]
        assert f"[{i}] accuracy {p['accuracy']:.3f} [95% CI {low:.2f}, {high:.2f}], {p['right']} right" in text
    gain = out["comparisons"][0]
    assert gain["gain"] == pytest.approx(second["accuracy"] - first["accuracy"])
    assert f"[2] minus [1]: {gain['gain']:+.3f}" in text and f"paired p={gain['p_value']:.3f}" in text
    assert "always answering the most common gold answer" in text
    assert text.count("\nexample ") == 3 and text.count("gold: ") == 3
    assert text.count("[1] read as: ") == 3 and text.count("[2] read as: ") == 3
    # the p-value is the exact paired test on these examples, not on the two accuracies alone
    shown = evaluate_prompts("builtin:compare", ["Answer.", "Think first, then answer."], dev=6, max_new_tokens=3,
                             show=6)["shown"]  # fmt: skip
    right = [[ex["by_prompt"][k]["correct"] for ex in shown] for k in (0, 1)]
    assert paired_gain(right[1], right[0]).p_value == gain["p_value"]


def test_rm_store_records_only_on_request(tmp_path, on_tiny_model):
    from gradprompt.store.trajectory import open_store

    runs, store = tmp_path / "runs", str(tmp_path / "store")
    kept = {**SMALL, "trajectory": True, "retrieve_k": 0}
    optimize("builtin:compare", steps=1, run_dir=runs, run_id="a", store=store, **kept)
    optimize("builtin:compare", steps=1, run_dir=runs, run_id="b", store=store, **kept)
    trajectory = open_store(store)
    assert trajectory.records(run_id="a") and trajectory.records(run_id="b")
    assert remove_runs(["a"], run_dir=runs)[0]["trajectory_records"] == 0
    assert trajectory.records(run_id="a")  # kept for later runs to learn from
    counted = len(trajectory.records(run_id="b"))
    assert remove_runs(["b"], run_dir=runs, store_records=True)[0]["trajectory_records"] == counted
    assert not trajectory.records(run_id="b") and trajectory.records(run_id="a")
