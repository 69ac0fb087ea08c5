"""The run report and the accuracy benchmark on the real bundled model: a short real run with a
human edit explains itself in HTML and Markdown, and the benchmark runs end to end, resumes
without redoing a finished task, and refuses to mix settings in one folder."""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from helpers import SMALL_RUN, run_cli

from gradprompt.errors import GradpromptError
from gradprompt.graph import optimize, report

pytestmark = pytest.mark.model

EDITED = "Compare both numbers carefully, then answer."
PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    answers = iter([{"action": "edit", "prompt": EDITED}, {"action": "approve"}])
    result = optimize(
        "builtin:compare",
        steps=2,
        human_approval=True,
        approver=lambda request: next(answers),
        run_dir=run_dir,
        store=str(run_dir / "store"),
        **{**SMALL_RUN, "test": 0},  # a run may skip the test split; its report says so
    )
    return run_dir, result


def test_html_report_has_every_section(short_run, tmp_path):
    run_dir, result = short_run
    path = report(result.run_id, out=tmp_path, run_dir=run_dir)
    text = path.read_text()
    for section in ("Summary", "Score per step", "Steps", "Prompt evolution", "Edit limit per step"):
        assert f"<h2>{section}</h2>" in text
    assert "<h2>Candidate sources</h2>" in text and "<h2>Time per node</h2>" in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(PNG) for i in images)
    # the human edit at step 0 is shown as a word diff, and the sources table counts it as accepted
    assert "<ins>" in text and "carefully," in text
    # source, offered, raced, finished the pool, accepted
    cells = r"<tr><td>(\w+)</td>" + r"<td>(\d+)</td>" * 4
    rows = {r[0]: r[1:] for r in re.findall(cells, text)}
    assert rows["human"] == ("1", "1", "1", "1")
    assert html.escape(result.best_prompt) in text and "<th>test accuracy</th><td>- → -</td>" in text


def test_markdown_report_with_dev_scores_for_every_step(short_run, tmp_path):
    run_dir, result = short_run
    path = report(result.run_id, out=tmp_path, fmt="md", score_dev=True, run_dir=run_dir)
    text = path.read_text()
    for name in ("scores", "edit_limit", "sources", "timings"):
        assert f"]({name}.png)" in text
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG)
    steps = [line for line in text.splitlines() if re.match(r"\| [01] \| ", line)]
    assert len(steps) == 2
    dev_column = [line.split(" | ")[6] for line in steps]
    assert all(re.fullmatch(r"\d\.\d{3}", v) for v in dev_column)  # every step has a dev accuracy
    assert "| human | 1 | 1 | 1 | 1 | 100% |" in text
    assert "by human" in text


def test_report_from_the_cli_and_its_errors(short_run, tmp_path):
    run_dir, result = short_run
    out = run_cli("report", result.run_id, "--out", str(tmp_path), "--json", run_dir=run_dir)
    assert out.returncode == 0, out.stderr
    assert Path(json.loads(out.stdout)["report"]).is_file()
    missing = run_cli("report", "no-such-run", run_dir=run_dir)
    assert missing.returncode == 2 and "no-such-run" in missing.stderr
    with pytest.raises(GradpromptError, match="html or md"):
        report(result.run_id, fmt="pdf", run_dir=run_dir)


def _benchmark(name: str = "accuracy"):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


TINY = ["--steps", "1", "--train", "4", "--dev", "4", "--test", "6", "--batch-size", "2", "--max-new-tokens", "8"]


def test_accuracy_benchmark_end_to_end_and_resume(tmp_path, capsys):
    bench = _benchmark()
    out = tmp_path / "bench"
    args = ["--tasks", "builtin:compare", "--out", str(out), *TINY]
    assert bench.main(args) == 0
    row = json.loads((out / "tasks" / "builtin-compare.json").read_text())
    assert set(row["scores"]) == {"empty", "step_by_step", "initial", "optimized"}
    for s in row["scores"].values():
        assert s["n"] == 6 and s["correct"] == round(s["accuracy"] * 6)
        assert s["ci95"][0] <= s["accuracy"] <= s["ci95"][1]
    assert row["usage"]["calls"] > 0 and row["usage"]["tokens_generated"] > 0 and row["seconds"] > 0
    gain = row["gain"]
    assert gain["n"] == 6 and gain["ci95"][0] <= gain["gain"] <= gain["ci95"][1] and 0 <= gain["p_value"] <= 1
    optimized, initial = row["scores"]["optimized"]["correct"], row["scores"]["initial"]["correct"]
    assert gain["gain"] == pytest.approx((optimized - initial) / 6)
    assert row["kept_initial"] == (row["prompts"]["optimized"] == row["prompts"]["initial"]) and row["reason"]
    leader = row["dev_leader"]  # the audit of the final choice: its dev leader scored on test
    assert leader is not None, "a step's finalists always have a dev leader"
    assert leader["test_gain"]["n"] == 6
    assert leader["test_gain"]["gain"] == pytest.approx(leader["test_accuracy"] - initial / 6)  # against the initial
    assert row["rules"]["shared_alpha"]["text"] == row["prompts"]["optimized"]  # the default rule decides
    table = (out / "results.md").read_text()
    assert "| builtin-compare | 6 |" in table and "mean of 1 tasks" in table and "gain over initial" in table
    (out / "results.md").unlink()
    assert bench.main([*args, "--summary-only"]) == 0 and (out / "results.md").read_text() == table
    assert (out / "accuracy.png").read_bytes().startswith(PNG)

    # the second call keeps the finished task: no new run, no new file
    before = (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns
    runs_before = sorted(p.name for p in (out / "runs").iterdir())
    capsys.readouterr()
    assert bench.main(args) == 0
    assert "done earlier, kept" in capsys.readouterr().err
    assert (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns == before
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before

    # --trace adds gain against steps to the finished task without running its search again
    assert bench.main([*args, "--trace"]) == 0
    trace = json.loads((out / "tasks" / "builtin-compare.json").read_text())["trace"]
    assert len(trace) == row["steps"] and all(t["test_gain"]["n"] == 6 for t in trace)
    for t in trace:  # each held prompt against the initial on the same test examples
        assert t["test_gain"]["gain"] == pytest.approx(t["test_accuracy"] - initial / 6)
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before
    assert "held after each step" in (out / "results.md").read_text()

    # a row finished before a final rule existed gets every rule's verdict again from the cached
    # dev rollouts, the same as the run's own finalize gave, without searching again
    path = out / "tasks" / "builtin-compare.json"
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "rules": {"pool_order": kept["rules"]["pool_order"]}}))
    assert bench.main(args) == 0
    again = json.loads(path.read_text())
    assert again["rules"] == kept["rules"]
    for key in ("prompts", "scores", "gain", "dev_gain", "kept_initial", "reason", "dev_leader"):
        assert again[key] == kept[key], key
    # another final rule on the same folder: the rows report that rule's recorded verdict
    assert bench.main([*args, "--final-rule", "bonferroni"]) == 0
    other = json.loads(path.read_text())
    verdict = kept["rules"]["bonferroni"]
    assert other["reason"] == verdict["reason"] and other["gain"] == verdict["test_gain"]
    assert other["prompts"]["optimized"] == verdict["text"] and other["judged_again"] == "bonferroni"
    assert json.loads((out / "settings.json").read_text())["final_rule"] == "bonferroni"
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before

    # other settings in the same folder are refused with the fix named
    assert bench.main([*args[:-2], "--max-new-tokens", "16"]) == 2
    assert "max_new_tokens" in capsys.readouterr().err


@pytest.mark.heavy(70)
def test_transfer_benchmark_cold_against_warm_and_resume(tmp_path, capsys):
    bench = _benchmark("transfer")
    out = tmp_path / "transfer"
    tasks = ["builtin:compare", "builtin:category", "builtin:arithmetic"]
    args = ["--tasks", *tasks, "--fill", "2", "--out", str(out), *TINY]
    assert bench.main(args) == 0
    summary = json.loads((out / "results.json").read_text())
    plan = summary["plan"]
    assert sorted(plan["fill"] + plan["held"]) == sorted(t.replace(":", "-") for t in tasks)
    assert len(plan["fill"]) == 2 and len(summary["fill"]) == 2
    (row,) = summary["held"]
    n = row["test_examples"]
    assert n == 6
    for arm in ("initial", "cold", "warm", "raced"):
        assert row[arm]["correct"] == round(row[arm]["accuracy"] * n)
    diff = row["warm_minus_cold"]
    assert diff["gain"] == pytest.approx((row["warm"]["correct"] - row["cold"]["correct"]) / n)
    assert diff["ci95"][0] <= diff["gain"] <= diff["ci95"][1]
    # the warm run weighed the fill tasks' prompts against the initial one; the cold one had none
    assert row["warm_start"]["considered"] > 1 and row["warm_start"]["seconds"] > 0
    # the raced warm start weighed the same stored prompts, on no more dev examples than scoring them all
    raced = row["raced_start"]
    assert raced["considered"] == row["warm_start"]["considered"]
    assert raced["dev_examples"] <= row["warm_start"]["dev_examples"]
    cold_reach = row["reach_cold_dev"]["cold"]
    assert cold_reach["steps"] is not None and cold_reach["dev_curve"][cold_reach["steps"]] >= row["cold_final_dev"]
    assert len(cold_reach["dev_curve"]) == 2  # the start and one step
    assert summary["minus_cold"]["warm"]["mean"] == pytest.approx(diff["gain"])
    assert set(summary["minus_cold"]) == {"warm", "raced"}
    table = (out / "results.md").read_text()
    assert f"| {plan['held'][0]} | 6 |" in table and "mean of 1 tasks" in table
    assert (out / "transfer.png").read_bytes().startswith(PNG)
    # the warm store is a copy: the fill store keeps only the fill runs' records
    from gradprompt.store.trajectory import TrajectoryStore

    assert {r.run_id.split("-")[0] for r in TrajectoryStore(out / "fill" / "store").records()} == {"fill"}

    # started again: nothing runs, nothing changes
    before = {p: p.stat().st_mtime_ns for p in (out / "tasks").iterdir()}
    capsys.readouterr()
    assert bench.main(args) == 0
    assert "optimizing" not in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "tasks").iterdir()} == before
    assert bench.main([*args[:-2], "--max-new-tokens", "16"]) == 2  # other settings, same folder


@pytest.mark.heavy(25)
def test_readout_benchmark_scores_both_readouts_on_the_same_reasoning(tmp_path, capsys):
    bench = _benchmark("readout")
    out = tmp_path / "readout"
    args = ["--tasks", "builtin:compare", "builtin:arithmetic", "--out", str(out), "--test", "4"]
    args += ["--train", "4", "--dev", "4", "--max-new-tokens", "6"]
    assert bench.main(args) == 0
    closed = json.loads((out / "tasks" / "builtin-compare.json").read_text())
    opened = json.loads((out / "tasks" / "builtin-arithmetic.json").read_text())
    for row in (closed, opened):
        assert set(row["scores"]) == {"empty", "step_by_step", "initial"}
        for scores in row["scores"].values():
            assert set(scores) == set(bench.READOUTS)
            assert all(s["n"] == 4 and s["ci95"][0] <= s["accuracy"] <= s["ci95"][1] for s in scores.values())
    # an open answer is generated under both readouts, from the same reasoning: the same answers
    for scores in opened["scores"].values():
        assert scores["choice"] == scores["generate"]
    assert "wordings" not in opened and set(closed["wordings"]) == set(bench.WORDINGS)
    # every choice prediction is an allowed answer, counted once per prompt and example
    assert sum(closed["predicted_counts"].values()) == 3 * 4
    assert set(closed["predicted_counts"]) <= {"yes", "no"}
    table = (out / "results.md").read_text()
    assert "| builtin-compare |" in table and "options not named" in table
    before = (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns
    assert bench.main(args) == 0  # started again: finished tasks are kept
    assert (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns == before


def test_cli_startup_benchmark_times_each_command_against_the_eager_import(tmp_path, capsys):
    bench = _benchmark("cli_startup")
    out = tmp_path / "startup"
    assert bench.main(["--repeats", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["commands"]
    assert set(rows) == {"--help", "runs list"}  # no run to show in an empty folder
    for row in rows.values():
        assert row["repeats"] == 1 and row["median_s"] > 0 and row["eager_median_s"] > 0
        assert row["speedup"] == pytest.approx(row["eager_median_s"] / row["median_s"], rel=0.02, abs=0.06)
    assert "| `runs list` |" in (out / "results.md").read_text()
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0", "--out", str(out)])
    assert "--repeats must be 1 or more (got 0)" in capsys.readouterr().err


def test_precision_benchmark_pairs_the_same_rows_under_both_precisions(tmp_path):
    bench = _benchmark("precision")
    out = tmp_path / "precision"
    args = ["--tasks", "builtin:compare", "--out", str(out), "--train", "4", "--dev", "4", "--test", "6"]
    args += ["--repeats", "1"]
    assert bench.main(args) == 0
    row = json.loads((out / "tasks" / "builtin-compare.json").read_text())
    assert set(row["prompts"]) == {"empty", "step_by_step", "initial", "answer_format"}
    assert row["prompts"]["answer_format"]["text"] in ("Answer with Yes or No.", "Answer with No or Yes.")
    for p in row["prompts"].values():
        for dt in ("float32", "bfloat16"):
            assert p[dt]["n"] == 6 and p[dt]["ci95"][0] <= p[dt]["accuracy"] <= p[dt]["ci95"][1]
        # the paired difference is bfloat16 minus float32 on the same six examples
        assert p["difference"]["gain"] == pytest.approx(p["bfloat16"]["accuracy"] - p["float32"]["accuracy"])
        assert p["difference"]["only_new_right"] - p["difference"]["only_old_right"] == round(
            6 * p["difference"]["gain"]
        )
        assert 0.0 <= p["same_answer"] <= 1.0 and p["max_gold_logprob_change"] >= 0.0
    assert row["speedup"] == pytest.approx(row["seconds"]["float32"] / row["seconds"]["bfloat16"], rel=0.02)
    assert "| builtin-compare | empty |" in (out / "results.md").read_text()
    before = (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns
    assert bench.main(args) == 0  # started again: the finished task is kept
    assert (out / "tasks" / "builtin-compare.json").stat().st_mtime_ns == before
