"""Many runs on many workers with the real parts, all on 127.0.0.1: a PostgreSQL server started
here for checkpoints and the run index, a local Ray cluster for the sweep, and a `chroma run`
server for the shared trajectory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter

import pytest
from helpers import (
    ENV,
    SMALL_RUN,
    call_cli,
    flags,
    free_port,
    node_runs,
    pause_inside_step,
    run_cli,
    start_cli,
    unavailable,
    wait_until,
)
from servers import local_postgres, postgres_bin

from gradprompt.graph import list_runs, optimize, run_values
from gradprompt.store.chroma_server import serving
from gradprompt.store.trajectory import open_store

TINY = {**SMALL_RUN, "train": 3, "dev": 3, "test": 3, "max_new_tokens": 6, "refine": False}


@pytest.fixture(scope="module")
def postgres_server():
    if postgres_bin() is None:
        unavailable(
            "no PostgreSQL server binaries here (Debian's postgresql, or `pip install pgserver`)", setup_provides=True
        )
    with local_postgres(durable=False) as url:
        yield url


@pytest.fixture
def pg(postgres_server) -> str:
    """A fresh database on the module's server, so tests never see each other's runs."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


def _one_line_error(out, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_bad_checkpointer_is_one_clear_error(tmp_path, postgres_server):
    down = f"postgresql://gradprompt@127.0.0.1:{free_port()}/gradprompt"  # nothing listens there
    _one_line_error(call_cli("runs", "list", "--checkpointer", down, run_dir=tmp_path), "cannot open the checkpoint")
    _one_line_error(
        call_cli("runs", "list", "--checkpointer", "mysql://u@h:1/db", run_dir=tmp_path), "not a PostgreSQL URL"
    )
    missing_db = postgres_server.rsplit("/", 1)[0] + "/no_such_db"
    out = call_cli("runs", "list", run_dir=tmp_path, env={"GRADPROMPT_CHECKPOINTER": missing_db})
    _one_line_error(out, "no_such_db")
    _one_line_error(call_cli("runs", "list", "--checkpointer", "runs.db", run_dir=tmp_path), "--run-dir")


def test_postgres_run_index_and_locks_across_processes(tmp_path, pg):
    from gradprompt.errors import GradpromptError
    from gradprompt.store.checkpoints import open_runs

    runs = open_runs(tmp_path, pg)
    info = {"run_id": "r1", "settings": {"task": "t", "model": "m", "variant": "official", "steps": 1}}
    runs.write_info("r1", info)
    assert runs.list_ids() == ["r1"] and runs.read_info("r1") == info
    runs.write_decision("r1", {"action": "approve", "step": 0})
    assert runs.read_decision("r1") == {"action": "approve", "step": 0}
    runs.clear_decision("r1")
    assert runs.read_decision("r1") is None
    with pytest.raises(GradpromptError, match=r"unknown run id 'r2'.*recent runs: r1"):
        runs.read_info("r2")

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
                import sys, time
                from gradprompt.store.checkpoints import open_runs
                with open_runs(None, sys.argv[1]).lock("r1", "optimize"):
                    print("held", flush=True)
                    time.sleep(600)
            """),
            pg,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"run r1 is in use .*held by gradprompt pid {holder.pid}"
        with pytest.raises(GradpromptError, match=busy), runs.lock("r1", "resume"):
            pass
        with runs.lock("r2", "optimize"), runs.lock("r2", "fork"):  # another run is free; re-entrant here
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    deadline = time.time() + 300  # the server drops a killed holder's lock once it sees the connection end
    while True:
        try:
            with runs.lock("r1", "resume"):
                break
        except GradpromptError:
            assert time.time() < deadline, "the lock of a killed holder was never released"
            time.sleep(0.5)


def test_postgres_statuses_examples_and_rm(tmp_path, pg, tiny_rt, monkeypatch):
    """On the tiny model with PostgreSQL: a held run reads running with its holder, a run from
    in-memory examples keeps them in the index and resumes, and `runs rm` removes checkpoints, the
    unshared cache rows and the index row, refusing a held run and changing nothing on a dry run."""
    import psycopg

    import gradprompt.nodes.session
    from gradprompt.errors import GradpromptError
    from gradprompt.graph import fork, remove_runs
    from gradprompt.graph.api import ApprovalPending, resume

    monkeypatch.setattr(gradprompt.nodes.session, "_runtime", lambda *args: tiny_rt)
    small = {"train": 3, "dev": 3, "test": 3, "batch_size": 2, "max_new_tokens": 2, "n_evaluate": 2, "top_k": 4,
             "refine": False, "trajectory": False}  # fmt: skip
    where = {"checkpointer": pg, "run_dir": tmp_path}
    rows = [{"question": f"Is {a} larger than {b}? Answer Yes or No.", "answer": "Yes" if a > b else "No"}
            for a, b in [(3, 9), (8, 2), (7, 1), (4, 6), (9, 5), (1, 2), (6, 3), (2, 8), (5, 4)]]  # fmt: skip
    with pytest.raises(ApprovalPending):
        optimize(examples=rows, steps=1, run_id="mem", human_approval=True, **where, **small)
    optimize("builtin:compare", steps=1, run_id="one", **where, **small)
    fork("one", 0, new_id="two", **where)
    held = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from gradprompt.store.checkpoints import open_runs
            with open_runs(None, sys.argv[1]).lock("two", "resume"):
                print("held", flush=True)
                time.sleep(600)
        """), pg],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert held.stdout.readline().strip() == "held"
        status = {r["run_id"]: r for r in list_runs(**where)}
        with pytest.raises(GradpromptError, match="run two is in use"):
            remove_runs(["two"], **where)
    finally:
        held.kill()
        held.wait()
    assert status["two"]["status"] == "running" and f"pid {held.pid} on " in status["two"]["status_text"]
    assert status["mem"]["status"] == "waiting for approval" and status["one"]["status"] == "finished"

    gradprompt.nodes.session._task.cache_clear()  # as a new process: the examples come back from the index
    from gradprompt.nodes.tasks import inline

    inline._registered.clear()
    done = resume("mem", approver=lambda request: {"action": "reject"}, **where)
    assert done.steps == 1 and done.final.get("baseline")

    def counts() -> tuple:
        with psycopg.connect(pg) as conn:
            threads = dict(conn.execute("SELECT thread_id, count(*) FROM checkpoints GROUP BY thread_id").fetchall())
            cache = dict(conn.execute("SELECT prefix, count(*) FROM store GROUP BY prefix").fetchall())
            index = [r for (r,) in conn.execute("SELECT run_id FROM gradprompt_runs ORDER BY run_id")]
        return threads, cache, index

    before = counts()
    assert set(before[0]) == {"mem", "one", "two"} and before[2] == ["mem", "one", "two"]
    remove_runs(["mem", "one"], dry_run=True, **where)
    assert counts() == before
    out = {r["run_id"]: r for r in remove_runs(["mem", "one"], **where)}
    threads, cache, index = counts()
    assert set(threads) == {"two"} and index == ["two"]
    # the cache is keyed by model, readout and (prompt, example): both removed runs share it with "two"
    assert out["one"]["cache_kept"].startswith("shared with two") and out["mem"]["cache_kept"].startswith("shared")
    assert cache == before[1]
    assert remove_runs(["two"], **where)[0]["cache_rows"] == sum(before[1].values())  # the last user takes them
    assert counts() == ({}, {}, [])


@pytest.mark.model
@pytest.mark.heavy(40)
def test_killed_run_resumes_from_postgres_to_the_same_result(tmp_path, pg):
    args = ["optimize", "--task", "builtin:compare", "--steps", "2", "--seed", "5", *flags(TINY)]
    proc = start_cli(*args, "--store", str(tmp_path / "store-killed"), "--run-id", "killed", "--checkpointer", pg,
                     run_dir=tmp_path)  # fmt: skip

    try:  # step 0 finished, step 1 under way
        pause_inside_step(proc, 1, lambda: run_values("killed", checkpointer=pg, run_dir=tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = run_values("killed", checkpointer=pg, run_dir=tmp_path)
    assert not before.get("final")
    listed = call_cli("runs", "list", "--json", "--checkpointer", pg, run_dir=tmp_path / "another-folder")
    assert [r["status"] for r in json.loads(listed.stdout)] == ["stopped"]  # the index is in the database
    resumed = run_cli("resume", "killed", "--json", "--checkpointer", pg, run_dir=tmp_path / "another-folder")
    assert resumed.returncode == 0, resumed.stderr
    got = json.loads(resumed.stdout)
    # it went on from the last checkpoint: no node ran twice, step 0 kept its record and timings
    assert set(node_runs("killed", checkpointer=pg).values()) == {1}
    assert got["history"][0] == before["history"][0]

    straight = optimize("builtin:compare", steps=2, seed=5, run_dir=tmp_path / "sqlite", run_id="straight",
                        store=str(tmp_path / "store-straight"), **TINY)  # fmt: skip
    assert got["steps"] == straight.steps == 2
    assert got["best_prompt_ids"] == straight.best_prompt_ids
    assert [h["candidates"] for h in got["history"]] == [h["candidates"] for h in straight.history]
    killed = open_store(str(tmp_path / "store-killed")).records(run_id="killed")
    plain = open_store(str(tmp_path / "store-straight")).records(run_id="straight")
    assert sorted((r.step, r.source, r.text) for r in killed) == sorted((r.step, r.source, r.text) for r in plain)


def _expected_records(history: list[dict]) -> Counter:
    """What the trajectory must hold for a run: each step's current prompt and every candidate."""
    return Counter((h["step"], c["source"], c["text"]) for h in history for c in [h["current"], *h["candidates"]])


def _worker_of(pg: str, run_id: str) -> int | None:
    """The pid of the Ray worker driving ``run_id`` (its lock connection names it)."""
    import psycopg

    with psycopg.connect(pg) as conn:
        for (name,) in conn.execute("SELECT application_name FROM pg_stat_activity"):
            if name.startswith("gradprompt pid ") and name.endswith(f"optimize {run_id}"):
                return int(name.split()[2])
    return None


@pytest.mark.model
@pytest.mark.heavy(75)
def test_sweep_on_two_workers_survives_a_dead_worker_and_an_interruption(tmp_path, pg):
    tasks = ["builtin:compare", "builtin:arithmetic", "builtin:category"]
    with serving(tmp_path / "trajectory", port=free_port()) as store:
        command = ["sweep", "--name", "s", "--tasks", *tasks, "--workers", "2", "--cpus-per-run", "1",
                   "--checkpointer", pg, "--store", store, "--steps", "2", *flags(TINY)]  # fmt: skip
        proc = start_cli(*command, run_dir=tmp_path)
        killed_worker = None
        try:
            # a worker dies mid-run: Ray retries the run, which resumes from its checkpoints
            held: list[int] = []

            def holder_past_step_0() -> bool:
                """The worker holding the run once step 0 is checkpointed, read in one check: a run
                that finished in between has no holder, and no pid comes back to kill."""
                pid = _worker_of(pg, "s-compare-smollm2-s0")
                if pid is not None and run_values("s-compare-smollm2-s0", checkpointer=pg).get("step", 0) >= 1:
                    held.append(pid)
                return bool(held)

            wait_until(holder_past_step_0, proc, "a worker holding the run after step 0", 900)
            killed_worker = held[0]
            os.kill(killed_worker, signal.SIGKILL)

            def one_finished() -> bool:
                return any(r["status"] == "finished" for r in list_runs(checkpointer=pg))

            wait_until(one_finished, proc, "one run finished", 1200)
        finally:
            proc.send_signal(signal.SIGINT)  # the sweep is interrupted halfway
            proc.communicate(timeout=600)
        before = {r["run_id"]: r for r in list_runs(checkpointer=pg)}
        finished = {k for k, r in before.items() if r["status"] == "finished"}
        assert finished and len(finished) < len(tasks)
        heads = {k: _head(pg, k) for k in finished}

        again = run_cli(*command, "--json", run_dir=tmp_path, timeout=1800)
        assert again.returncode == 0, again.stderr
        outcomes = {o["run_id"]: o for o in json.loads(again.stdout)}
        assert {k: o["status"] for k, o in outcomes.items()} == dict.fromkeys(
            ["s-compare-smollm2-s0", "s-arithmetic-smollm2-s0", "s-category-smollm2-s0"], "finished"
        )
        assert {k for k, o in outcomes.items() if o["earlier"]} == finished  # not redone...
        assert {k: _head(pg, k) for k in finished} == heads  # ...not even one checkpoint more
        assert killed_worker is not None
        trajectory = open_store(store)
        for run in list_runs(checkpointer=pg):
            # what the sweep said of each run, beside what its checkpoints hold, if they disagree
            assert run["status"] == "finished" and run["steps"] == 2, (run, outcomes, again.stderr[-1500:])
            history = run_values(run["run_id"], checkpointer=pg)["history"]
            assert [h["step"] for h in history] == [0, 1]
            recorded = Counter((r.step, r.source, r.text) for r in trajectory.records(run_id=run["run_id"]))
            assert set(recorded.values()) == {1}  # nothing written twice, the final dev scores included
            searched = Counter({k: n for k, n in recorded.items() if k[1] != "dev"})
            assert searched == _expected_records(history)  # every evaluated candidate exactly once


def _head(pg: str, run_id: str) -> str:
    from gradprompt.graph.threads import config, run_graph
    from gradprompt.store.checkpoints import open_runs

    with run_graph(open_runs(None, pg)) as graph:
        return graph.get_state(config(run_id)).config["configurable"]["checkpoint_id"]


def test_sweep_plans_and_reads_files(tmp_path):
    from gradprompt.errors import GradpromptError
    from gradprompt.graph.sweep import plan, read_sweep_file

    runs = plan("n", ["builtin:compare", "bbh:/a/navigate.json", "bbh:/b/navigate.json"], ["smollm2"], [0, 1, 0])
    assert [r.run_id for r in runs][:2] == ["n-compare-smollm2-s0", "n-compare-smollm2-s1"]
    assert len({r.run_id for r in runs}) == len(runs) == 6  # same file name in two folders: still distinct
    toml = tmp_path / "s.toml"
    toml.write_text('name = "nightly"\ntasks = ["builtin:compare"]\nseeds = [1, 2]\n[settings]\nsteps = 2\n')
    assert read_sweep_file(toml) == {"name": "nightly", "tasks": ["builtin:compare"], "seeds": [1, 2],
                                     "settings": {"steps": 2}}  # fmt: skip
    (tmp_path / "s.yaml").write_text("tasks: builtin:compare\nsettings: {steps: 1}\n")
    assert read_sweep_file(tmp_path / "s.yaml")["tasks"] == ["builtin:compare"]
    (tmp_path / "bad.toml").write_text("task = 'x'\n")
    with pytest.raises(GradpromptError, match="unknown keys \\['task'\\]"):
        read_sweep_file(tmp_path / "bad.toml")
    out = run_cli("sweep", "--tasks", "builtin:compare", "--seed", "3", run_dir=tmp_path)
    _one_line_error(out, "a sweep takes `seeds`")
    out = run_cli("sweep", "--tasks", "builtin:nope", "--no-ray", run_dir=tmp_path)
    _one_line_error(out, "unknown built-in task 'nope'")
    out = run_cli("sweep", "--tasks", "builtin:compare", "--retries", "-1", run_dir=tmp_path)
    _one_line_error(out, "--retries must be 0 or more (got -1)")


@pytest.mark.model
@pytest.mark.heavy(35)
def test_accuracy_benchmark_runs_its_tasks_on_two_ray_workers(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", root / "benchmarks" / "accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench"
    tiny = ["--steps", "1", "--train", "3", "--dev", "3", "--test", "3", "--batch-size", "2", "--max-new-tokens", "6"]
    args = ["--tasks", "builtin:compare", "builtin:category", "--workers", "2", "--out", str(out), *tiny]
    assert bench.main(args) == 0
    err = capsys.readouterr().err
    assert "served at http://127.0.0.1:" in err and "2 done, 0 running, 0 failed of 2" in err
    for name in ("builtin-compare", "builtin-category"):
        row = json.loads((out / "tasks" / f"{name}.json").read_text())
        assert row["scores"]["optimized"]["n"] == 3 and row["steps"] == 1
    assert "mean of 2 tasks" in (out / "results.md").read_text()
