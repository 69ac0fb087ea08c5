"""Answering new questions the run's way, on the tiny model: the same answers as the run's rollouts,
option probabilities that are the decode's own, and one clear error per bad input row."""

from __future__ import annotations

import math

import pytest

from gradprompt.errors import GradpromptError
from gradprompt.nodes.answering import answer_questions, renormalised
from gradprompt.nodes.greater import rollout
from gradprompt.nodes.tasks import Example, builtin_task, detect_answer_format
from gradprompt.nodes.tasks.readout import readout_of

PROMPT = "Let's think step by step."


def _tasks():
    letters = builtin_task("category").examples[:6]
    questions = [e.question for e in builtin_task("compare").examples[:6]]
    labels = [Example(q, ["Yes", "Uncertain premises", "number numbers"][i % 3]) for i, q in enumerate(questions)]
    numbers = [Example(q, str(i)) for i, q in enumerate(questions)]
    return {"letters": letters, "labels": labels, "numbers": numbers}


@pytest.mark.parametrize("kind", ["letters", "labels", "numbers"])
@pytest.mark.parametrize("max_new", [0, 6])
def test_answers_are_the_rollouts_answers_with_or_without_gold(tiny_rt, kind, max_new):
    rt = tiny_rt
    examples = _tasks()[kind]
    fmt = detect_answer_format([e.question for e in examples], [e.answer for e in examples] * 3)
    readout = readout_of(fmt, "choice", max_new)
    prompt = tuple(rt.encode_prompt(PROMPT))
    (run,) = rollout(rt, readout, examples, [prompt], max_new)
    questions = [e.question for e in examples]
    judged = answer_questions(rt, readout, prompt, questions, max_new, golds=[e.answer for e in examples])
    blind = answer_questions(rt, readout, prompt, questions, max_new)
    assert [a.text for a in judged] == run.answers == [a.text for a in blind]
    assert [a.correct for a in judged] == run.correct
    assert all(a.correct is None for a in blind)
    assert [a.reasoning for a in judged] == [rt.decode(r) for r in run.reasonings]
    for a, q in zip(judged, questions, strict=True):
        if readout.chooses:
            names = [n for n, _ in readout.options(q)]
            assert list(a.probabilities) == names
            assert math.isclose(sum(a.probabilities.values()), 1.0, rel_tol=1e-9)
            assert a.answer == max(a.probabilities, key=a.probabilities.get)
        else:
            assert a.probabilities is None and a.answer == fmt.parse(a.text, q)


def test_renormalised_probabilities_keep_the_log_ratios():
    lps = [-1.0, -3.0, -0.5]
    p = renormalised(lps)
    assert math.isclose(sum(p), 1.0)
    assert math.isclose(math.log(p[0] / p[1]), 2.0) and math.isclose(math.log(p[2] / p[0]), 0.5)
    assert renormalised([-1000.0, -1001.0]) == pytest.approx(renormalised([0.0, -1.0]))


def test_input_files_are_read_with_optional_gold_and_bad_ones_refused(tmp_path):
    from gradprompt.graph.predict import read_inputs

    good = tmp_path / "q.jsonl"
    good.write_text('{"text": " Is it? ", "label": "yes"}\n\n{"text": "And this?"}\n')
    rows = read_inputs(good)
    assert [(r.line, r.question, r.gold) for r in rows] == [(1, "Is it?", "yes"), (3, "And this?", None)]
    table = tmp_path / "q.csv"
    table.write_text("question,answer\nFirst?,no\nSecond?,\n")
    assert [(r.line, r.question, r.gold) for r in read_inputs(table)] == [(2, "First?", "no"), (3, "Second?", None)]
    cases = {
        "missing.jsonl": (None, "input file not found"),
        "empty.jsonl": ("", "holds no rows"),
        "other.jsonl": ('{"body": "x"}\n', "cannot tell which field holds the question"),
        "broken.jsonl": ('{"question": "x"}\n{"question": \n', "line 2: not valid JSON"),
        "notes.txt": ("question\n", "neither .jsonl nor .csv"),
    }
    for name, (text, says) in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(GradpromptError, match=says):
            read_inputs(path)
    with pytest.raises(GradpromptError, match="line 3: no field 'label', which --answer-field names"):
        read_inputs(good, answer_field="label")
    # falsy answers are answers; lists are read as JSON text, as the task loaders read them
    typed = tmp_path / "typed.jsonl"
    typed.write_text('{"question": ["a", "b"], "answer": 0}\n{"question": "c?", "answer": false}\n')
    assert [(r.question, r.gold) for r in read_inputs(typed)] == [('["a", "b"]', "0"), ("c?", "False")]
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"question": "caf\u00e9?"}\n'.encode("latin-1"))
    with pytest.raises(GradpromptError, match="not UTF-8"):
        read_inputs(latin)
