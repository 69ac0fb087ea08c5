"""Bad input and damaged state through the real CLI: one line naming the problem and the fix, a
non-zero exit, no traceback, and nothing else lost. Most errors come before a model is loaded."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import SMALL_RUN, call_cli, flags, run_cli

TINY = flags({**SMALL_RUN, "train": 2, "dev": 2, "test": 2, "max_new_tokens": 4})


def _one_line_error(out, needle: str, started: bool = False) -> str:
    """The error line; ``started``: the run had begun, so its id and progress lines come first."""
    assert out.returncode not in (0, 1), (out.returncode, out.stderr)  # 1 would be an uncaught exception
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    if started:
        lines = [line for line in lines if not line.startswith(("run ", "["))]
    assert len(lines) == 1, out.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "no_examples.json").write_text(json.dumps({"data": [{"input": "q", "target": "yes"}]}))
    rows = [json.dumps({"question": f"Is {i} odd?", "answer": "yes" if i % 2 else "no"}) for i in range(30)]
    (d / "malformed.jsonl").write_text("\n".join([*rows[:14], '{"question": "Is 14 odd?", "answer": ', *rows[15:]]))
    (d / "no_answer.csv").write_text("question,comment\n" + "\n".join(f"Is {i} odd?,none" for i in range(30)))
    (d / "few.jsonl").write_text("\n".join(rows[:10]))
    mixed = [json.dumps({"question": f"q{i}", "answer": i if i % 3 else "none"}) for i in range(30)]
    (d / "mixed.jsonl").write_text("\n".join(mixed))
    long = [json.dumps({"question": "word " * 9000 + f"{i}?", "answer": "yes" if i % 2 else "no"}) for i in range(8)]
    (d / "long.jsonl").write_text("\n".join(long))
    return d


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["optimize", "--task", "bbhh:{d}/no_examples.json"], "unknown task kind 'bbhh'"),
        (["optimize", "--task", "nonsense"], "not KIND:PATH"),
        (["optimize", "--task", "bbh:{d}/missing.json"], "dataset not found"),
        (["optimize", "--task", "bbh:{d}/no_examples.json"], "list under 'examples'"),
        (["optimize", "--task", "jsonl:{d}/malformed.jsonl"], "malformed.jsonl line 15: not valid JSON"),
        (["optimize", "--task", "csv:{d}/no_answer.csv"], "--answer-field"),
        (["optimize", "--task", "jsonl:{d}/few.jsonl"], "--train 2 --dev 4 --test 4 would fit"),
        (["optimize", "--task", "jsonl:{d}/mixed.jsonl"], "answers of mixed types"),
        (["optimize", "--task", "builtin:compare", "--steps", "-1"], "steps"),
        (["optimize", "--task", "builtin:compare", "--train", "0"], "train"),
        (["optimize", "--task", "builtin:compare", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["optimize", "--task", "builtin:compare", "--model", "org/not-downloaded"], "not in the local Hugging Face"),
        (["optimize", "--task", "builtin:compare", "--run-id", "../outside"], "invalid run id"),
        (["resume", "no-such-run"], "unknown run id"),
        (["resume", "a/b"], "invalid run id"),
        (["runs", "show", ".."], "invalid run id"),
        (["approve", "../x", "--action", "approve"], "invalid run id"),
        (["store", "stats", "--store", "http://127.0.0.1"], "needs a host and a port"),
    ],
)
def test_bad_input_before_any_model_load(args, needle, files, tmp_path):
    args = [a.replace("{d}", str(files)) for a in args]
    _one_line_error(call_cli(*args, run_dir=tmp_path), needle)
    assert not list(tmp_path.glob("*/run.json"))  # no half-made run is left behind
    assert not (files.parent / "outside").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["optimize", "--task", "jsonl:{d}/malformed.jsonl"], "malformed.jsonl line 15: not valid JSON"),
        (["resume", "no-such-run"], "unknown run id"),
    ],
)
def test_bad_input_through_the_installed_entry_point(args, needle, files, tmp_path):
    """The same errors from a fresh interpreter: the exit code and the single line hold there too."""
    args = [a.replace("{d}", str(files)) for a in args]
    _one_line_error(run_cli(*args, run_dir=tmp_path, timeout=600), needle)


def test_corrupted_store_folder(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "chroma.sqlite3").write_bytes(b"not a database" * 100)
    out = run_cli("store", "stats", "--store", str(store), run_dir=tmp_path, timeout=600)
    _one_line_error(out, "move a damaged folder away")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished run made by the CLI, for the damaged-state cases."""
    run_dir = tmp_path_factory.mktemp("runs")
    out = run_cli("optimize", "--task", "builtin:compare", "--steps", "1", *TINY, "--run-id", "done", run_dir=run_dir)
    assert out.returncode == 0, out.stderr
    return run_dir


def _copy(run_dir, tmp_path):
    target = tmp_path / "runs"
    shutil.copytree(run_dir, target)
    return target


@pytest.mark.model
def test_approve_on_a_run_that_is_not_waiting(finished_run, tmp_path):
    runs = _copy(finished_run, tmp_path)
    _one_line_error(call_cli("approve", "done", "--action", "approve", run_dir=runs), "not waiting for an approval")
    assert not (runs / "done" / "decision.json").exists()


@pytest.mark.model
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_database(finished_run, tmp_path, damage):
    runs = _copy(finished_run, tmp_path)
    db = runs / "checkpoints.sqlite"
    data = db.read_bytes()
    db.write_bytes(data[:5000] if damage == "truncated" else bytes(range(256)) * 20)
    for args in (["runs", "list"], ["resume", "done"], ["runs", "show", "done"]):
        _one_line_error(call_cli(*args, run_dir=runs), "move it away to start a fresh one")


@pytest.mark.model
def test_malformed_run_json_names_the_file_and_keeps_the_other_runs(finished_run, tmp_path):
    runs = _copy(finished_run, tmp_path)
    shutil.copytree(runs / "done", runs / "broken")
    (runs / "broken" / "run.json").write_text('{"run_id": "broken", "settings": ')
    _one_line_error(call_cli("runs", "show", "broken", run_dir=runs), "run.json is damaged")
    _one_line_error(run_cli("resume", "broken", run_dir=runs), "move the folder")
    listed = call_cli("runs", "list", "--json", run_dir=runs)
    assert listed.returncode == 0, listed.stderr
    status = {r["run_id"]: r["status"] for r in json.loads(listed.stdout)}
    assert status == {"done": "finished", "broken": "damaged"}


@pytest.mark.model
def test_question_longer_than_the_context(files, tmp_path):
    out = run_cli("optimize", "--task", f"jsonl:{files}/long.jsonl", "--steps", "1", *TINY, run_dir=tmp_path)
    _one_line_error(out, "the model's context holds", started=True)
