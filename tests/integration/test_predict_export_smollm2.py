"""Using a run's result on the real bundled model: `predict` gives the run's own test answers, the
exported ChatPromptTemplate tokenizes to the ids the run fed the model, the predictor works inside
a LangChain chain, and bad input is one line with no output file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import SMALL_RUN

from gradprompt.errors import GradpromptError
from gradprompt.graph.cli import main
from gradprompt.graph.export import export, load_template, prompt_template
from gradprompt.graph.lifecycle import optimize
from gradprompt.graph.predict import Predictor, load
from gradprompt.nodes.runtime.chat_layout import ChatLayout
from gradprompt.nodes.session import rollout_cache
from gradprompt.store.checkpoints import open_runs

pytestmark = pytest.mark.model

RUN = {**SMALL_RUN, "train": 6, "dev": 8, "test": 12, "max_new_tokens": 6}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One short run with reasoning, its test questions written out as a JSONL file."""
    run_dir = tmp_path_factory.mktemp("runs")
    result = optimize(
        "builtin:category", steps=1, run_dir=run_dir, run_id="used", initial_prompt="Answer the question.", **RUN
    )
    sess = load("used", run_dir=run_dir).session
    inputs = run_dir / "test.jsonl"
    inputs.write_text(
        "".join(json.dumps({"question": e.question, "answer": e.answer}) + "\n" for e in sess.splits.test)
    )
    return result, run_dir, inputs, sess


def _cli(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def test_predict_on_the_test_split_gives_the_runs_own_test_answers(finished, capsys, tmp_path):
    result, run_dir, inputs, sess = finished
    out = tmp_path / "answers.jsonl"
    code, said, _ = _cli(
        capsys, "predict", "used", "--input", str(inputs), "--out", str(out), "--run-dir", str(run_dir), "--json"
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads(said)
    assert len(rows) == len(sess.splits.test) == summary["rows"]
    # the run's test evaluation of its final prompt, per example, from the run's rollout cache
    final_ids = result.best_prompt_ids
    with open_runs(run_dir).rollout_store() as store:
        measured = rollout_cache(replace(sess, cache_store=store)).get(final_ids, sess.splits.test)
    assert all(m is not None for m in measured)
    assert [r["text"] for r in rows] == [m.answer for m in measured]
    assert [r["correct"] for r in rows] == [m.correct for m in measured]
    assert [r["reasoning"] for r in rows] == [sess.rt.decode(m.reasoning) for m in measured]
    assert any(r["reasoning"].strip() for r in rows)  # the run reasons before it answers
    assert summary["accuracy"]["right"] == result.final["best"]["test"]["right"]
    assert summary["accuracy"]["accuracy"] == pytest.approx(result.scores["best"]["test"])
    for r in rows:  # a closed set: every offered letter's probability, the answer the likeliest
        assert set(r["probabilities"]) == {"A", "B", "C"} and r["answer"] == max(
            r["probabilities"], key=r["probabilities"].get
        )
    # the initial prompt and any prompt text, under the same reading, give the run's test scores for them
    questions, golds = [e.question for e in sess.splits.test], [e.answer for e in sess.splits.test]
    initial = load("used", "initial", run_dir=run_dir)
    assert initial.which == "initial" and initial.prompt_text == result.baseline_prompt
    assert sum(p.correct for p in initial.predict(questions, golds)) == result.final["baseline"]["test"]["right"]
    typed = load("used", "Let's think step by step.", run_dir=run_dir)
    assert sum(p.correct for p in typed.predict(questions, golds)) == result.final["step_by_step"]["test"]["right"]
    # `evaluate` on the final prompt reads the same
    from gradprompt.graph.evaluation import evaluate_prompt

    ev = evaluate_prompt(
        "builtin:category",
        result.best_prompt,
        split="test",
        **{k: v for k, v in RUN.items() if k in ("train", "dev", "test", "max_new_tokens")},
    )
    assert ev["right"] == summary["accuracy"]["right"]


def test_the_exported_template_tokenizes_to_the_ids_the_run_fed_the_model(finished, capsys, tmp_path):
    from langchain_core.messages import convert_to_openai_messages

    result, run_dir, _inputs, sess = finished
    saved = tmp_path / "prompt.json"
    code, _, _ = _cli(
        capsys, "runs", "export", "used", "--format", "langchain", "--out", str(saved), "--run-dir", str(run_dir)
    )
    assert code == 0
    tok = sess.rt.tokenizer
    template = load_template(saved.read_text())
    assert template.metadata["gradprompt"]["extractor"] == sess.readout.extractor("")

    def fed(t, layout, prompt_ids, question):
        messages = convert_to_openai_messages(t.format_messages(question=question))
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
        return list(ids), list(layout.encode(question, prompt_ids).ids)

    for ex in sess.splits.test:
        got, want = fed(template, sess.rt.layout, result.best_prompt_ids, ex.question)
        assert got == want
    # every placement, and a prompt whose braces must not be read as template fields
    text = "Answer {briefly}: pick one."
    ids = sess.rt.encode_prompt(text)
    for placement in ("after", "before", "system"):
        settings = sess.settings.model_copy(update={"placement": placement})
        t = prompt_template(Predictor(settings, text, prompt_ids=ids))
        got, want = fed(t, ChatLayout(tok, placement), ids, sess.splits.test[0].question)
        assert got == want, placement
    # the JSON export carries the reading and the run's scores with intervals
    reading = json.loads(export(load("used", run_dir=run_dir), "json"))
    assert reading["prompt"] == result.best_prompt and reading["prompt_ids"] == result.best_prompt_ids
    assert reading["text_tokenizes_to_ids"] is True
    assert reading["scores"]["final"]["test"]["ci95"] == result.final["best"]["test"]["ci95"]
    assert reading["example"]["model_input"].endswith(sess.readout.extractor(""))
    code, text_out, _ = _cli(capsys, "runs", "export", "used", "--run-dir", str(run_dir))
    assert text_out == result.best_prompt + "\n"


def test_the_predictor_runs_inside_a_langchain_chain(finished):
    from langchain_core.runnables import RunnableLambda

    result, run_dir, _, sess = finished
    predictor = result.predictor(run_dir=run_dir)
    rows = [{"review": "  " + e.question + "\n"} for e in sess.splits.test[:4]]
    chain = RunnableLambda(lambda row: row["review"].strip()) | predictor.as_runnable()
    want = [p.answer for p in predictor.predict([e.question for e in sess.splits.test[:4]])]
    assert chain.batch(rows) == want
    assert chain.invoke(rows[0]) == want[0]
    assert predictor.as_runnable().invoke({"question": sess.splits.test[1].question}) == want[1]


def test_each_bad_input_is_one_line_and_leaves_no_output_file(finished, capsys, tmp_path):
    _, run_dir, inputs, sess = finished
    long = "Which of these is a fruit? " + "apple " * 9000 + "\nOptions:\n(A) pear\n(B) car"
    cases = {
        "unknown run": ("nosuchrun", inputs.read_text(), "nosuchrun"),
        "missing field": ("used", '{"text": "x"}\n{"body": "y"}\n', "line 2: no field 'text'"),
        "outside the label set": (
            "used",
            json.dumps({"question": sess.splits.test[0].question, "answer": "(Q)"}) + "\n",
            "not one of the run's answers",
        ),
        "empty file": ("used", "", "holds no rows"),
        "too long": ("used", json.dumps({"question": long}) + "\n", "the model's context holds"),
    }
    for what, (run_id, text, says) in cases.items():
        given = tmp_path / f"{what.replace(' ', '-')}.jsonl"
        given.write_text(text)
        out = tmp_path / f"{what.replace(' ', '-')}.out.jsonl"
        code, _said, err = _cli(
            capsys, "predict", run_id, "--input", str(given), "--out", str(out), "--run-dir", str(run_dir)
        )
        assert code != 0, what
        assert len(err.strip().splitlines()) == 1 and says in err, (what, err)
        assert not out.exists() and not list(tmp_path.glob(f".{out.name}*")), what
    folder = tmp_path / "a-folder"
    folder.mkdir()
    code, _, err = _cli(
        capsys, "predict", "used", "--input", str(inputs), "--out", str(folder), "--run-dir", str(run_dir)
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and "is a folder" in err
    with pytest.raises(GradpromptError, match="2 questions but 1 gold answers"):
        load("used", run_dir=run_dir).predict(["a?", "b?"], ["(A)"])
