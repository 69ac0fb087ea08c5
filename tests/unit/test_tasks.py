"""Loaders, answer-type detection, metrics and splits."""

from __future__ import annotations

import json

import pytest

from gradprompt.errors import GradpromptError
from gradprompt.nodes.tasks import (
    BUILTIN_TASKS,
    AnswerFormat,
    AnswerKind,
    builtin_task,
    detect_answer_format,
    load_task,
)

BBH_KINDS = {
    "boolean_expressions": AnswerKind.TRUE_FALSE,
    "date_understanding": AnswerKind.LETTER,
    "disambiguation_qa": AnswerKind.LETTER,
    "dyck_languages": AnswerKind.FREE_TEXT,
    "formal_fallacies": AnswerKind.VALID_INVALID,
    "hyperbaton": AnswerKind.LETTER,
    "logical_deduction_three_objects": AnswerKind.LETTER,
    "multistep_arithmetic_two": AnswerKind.INTEGER,
    "navigate": AnswerKind.YES_NO,
    "object_counting": AnswerKind.INTEGER,
    "sports_understanding": AnswerKind.YES_NO,
    "tracking_shuffled_objects_three_objects": AnswerKind.LETTER,
    "web_of_lies": AnswerKind.YES_NO,
    "word_sorting": AnswerKind.FREE_TEXT,
}


@pytest.mark.parametrize("name", sorted(BBH_KINDS))
def test_bbh_loader_and_answer_type(data_dir, name):
    task = load_task(f"bbh:{data_dir}/bbh/{name}.json")
    assert len(task.examples) == 250
    assert task.answer_format.kind is BBH_KINDS[name]
    fmt = task.answer_format
    # every gold answer, written as the model would after the extractor, is read back as correct
    for ex in task.examples:
        assert fmt.is_correct(fmt.target(ex.answer), ex.answer, ex.question), (ex.answer, fmt.target(ex.answer))


def test_gsm8k_loader(data_dir):
    task = load_task(f"gsm8k:{data_dir}/gsm8k/train.jsonl")
    assert len(task.examples) == 7473
    assert task.answer_format.kind is AnswerKind.INTEGER
    assert all("####" not in e.answer for e in task.examples)
    folder = load_task(f"gsm8k:{data_dir}/gsm8k")
    assert len(folder.examples) == 7473 and len(folder.held_out) == 1319
    splits = folder.split(0, 10, 10, 10)
    assert not {e.question for e in splits.test} & {e.question for e in folder.examples}


def test_folio_loader_normalises_labels(data_dir):
    train = load_task(f"folio:{data_dir}/folio/folio-train.jsonl")
    valid = load_task(f"folio:{data_dir}/folio/folio-validation.jsonl")
    assert len(train.examples) == 1004 and len(valid.examples) == 204
    for task in (train, valid):
        assert {e.answer for e in task.examples} == {"True", "False", "Uncertain"}
        assert task.answer_format.kind is AnswerKind.LABEL
        assert "Premises:" in task.examples[0].question


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_builtin_tasks_are_deterministic_and_typed(name):
    a, b = builtin_task(name), builtin_task(name)
    assert a.examples == b.examples and len(a.examples) == 300
    assert len({e.question for e in a.examples}) == 300
    fmt = a.answer_format
    for ex in a.examples:
        assert fmt.is_correct(fmt.target(ex.answer), ex.answer, ex.question)


def test_builtin_tasks_cover_different_answer_types():
    kinds = {builtin_task(n).answer_format.kind for n in BUILTIN_TASKS}
    assert {AnswerKind.INTEGER, AnswerKind.YES_NO, AnswerKind.LETTER} <= kinds


def test_arithmetic_answers_are_right():
    for ex in builtin_task("arithmetic").examples[:50]:
        expr = ex.question.removeprefix("What is ").removesuffix("?")
        a, op, b, op2, c = expr.split()
        first = int(a) * int(b) if op == "*" else int(a) + int(b) if op == "+" else int(a) - int(b)
        value = first + int(c) if op2 == "+" else first - int(c)
        assert str(value) == ex.answer


def test_splits_are_disjoint_and_seeded():
    task = builtin_task("compare")
    s1, s2, s3 = task.split(3, 20, 10, 30), task.split(3, 20, 10, 30), task.split(4, 20, 10, 30)
    assert s1 == s2 and s1 != s3
    ids = [[e.question for e in part] for part in (s1.train, s1.dev, s1.test)]
    assert [len(p) for p in ids] == [20, 10, 30]
    assert len({q for part in ids for q in part}) == 60


def test_empty_split_is_an_error():
    task = builtin_task("compare")
    with pytest.raises(GradpromptError, match=r"dev split .* is empty"):
        task.split(0, 300, 5, 5)


# ----- answer types and metrics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("golds", "questions", "kind"),
    [
        (["(A)", "(C)"], ["x", "y"], AnswerKind.LETTER),
        (["A", "B"], ["Options: (A) a (B) b", "(A) x (B) y"], AnswerKind.LETTER),
        (["Yes", "no", "YES"], ["q"] * 3, AnswerKind.YES_NO),
        (["True", "False"], ["q"] * 2, AnswerKind.TRUE_FALSE),
        (["valid", "invalid"], ["q"] * 2, AnswerKind.VALID_INVALID),
        (["12", "-3", "1,204"], ["q"] * 3, AnswerKind.INTEGER),
        (["hello world", "foo"], ["q"] * 2, AnswerKind.FREE_TEXT),
    ],
)
def test_answer_type_detection(golds, questions, kind):
    assert detect_answer_format(questions, golds).kind is kind


def test_single_letter_golds_without_options_are_not_letters():
    assert detect_answer_format(["what letter?", "next?"], ["A", "B"]).kind is not AnswerKind.LETTER


def test_closed_set_keeps_data_spelling_and_adds_missing_member():
    fmt = detect_answer_format(["q"] * 3, ["Yes", "Yes", "Yes"])
    assert fmt.labels == ("Yes", "No")
    assert fmt.target("yes") == " Yes"
    assert "Yes or No" in fmt.extractor("q")


@pytest.mark.parametrize(
    ("golds", "questions", "instruction"),
    [
        (["Sports", "World", "Tech", "Sports"] * 3, None, "Answer with Sports, World or Tech."),
        (["positive", "negative"] * 6, None, "Answer with positive or negative."),
        (["Yes", "No", "Yes"], None, "Answer with Yes or No."),
        (["false", "false"], None, "Answer with false or true."),
        (["(A)", "(B)"], ["Pick (A) x (B) y", "Pick (A) x (B) y"], "Answer with the letter of the correct option."),
        (["12", "7"], None, "Answer with a number."),
        (["a long free answer", "another one here"], None, ""),
    ],
)
def test_the_answer_format_instruction_names_the_labels_a_person_would(golds, questions, instruction):
    fmt = detect_answer_format(questions or ["q"] * len(golds), golds)
    assert fmt.instruction() == instruction


@pytest.mark.parametrize(
    ("generated", "gold", "correct"),
    [
        (" 42.", "42", True),
        (" $1,234 dollars", "1234", True),
        (" 5.0", "5", True),
        (" -7", "-7", True),
        (" 7", "-7", False),
        (" no number here", "3", False),
    ],
)
def test_integer_metric(generated, gold, correct):
    assert AnswerFormat(AnswerKind.INTEGER).is_correct(generated, gold) is correct


@pytest.mark.parametrize(
    ("generated", "correct"),
    [("B) because", True), ("B", True), (" (B)", True), ("D)", False), ("the answer B", False), ("A", False)],
)
def test_letter_metric_reads_the_first_allowed_letter(generated, correct):
    question = "Pick one. Options: (A) x (B) y (C) z"
    assert AnswerFormat(AnswerKind.LETTER).is_correct(generated, "(B)", question) is correct


@pytest.mark.parametrize(
    ("generated", "correct"), [(" Yes.", True), (" yes, it is", True), (" No", False), (" maybe", False)]
)
def test_yes_no_metric(generated, correct):
    fmt = detect_answer_format(["q"] * 2, ["Yes", "No"])
    assert fmt.is_correct(generated, "Yes") is correct


def test_free_text_metric_normalises_case_space_and_full_stop():
    fmt = AnswerFormat(AnswerKind.FREE_TEXT)
    assert fmt.is_correct("  Apple   Banana.\nmore text", "apple banana")
    assert not fmt.is_correct(" apple", "apple banana")


def test_answer_format_round_trips_json():
    fmt = detect_answer_format(["q"] * 3, ["True", "False", "Uncertain"])
    assert AnswerFormat.from_json(json.loads(json.dumps(fmt.to_json()))) == fmt


# ----- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "not KIND:PATH"),
        ("xml:foo.xml", "unknown task kind"),
        ("builtin:nope", "unknown built-in task"),
        ("jsonl:/does/not/exist.jsonl", "dataset not found"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(GradpromptError, match=message):
        load_task(spec)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b", "answer": \n')
    with pytest.raises(GradpromptError, match=r"d\.jsonl line 2: not valid JSON"):
        load_task(f"jsonl:{path}")


def test_jsonl_missing_field_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    with pytest.raises(GradpromptError, match=r"line 2: no field 'answer'"):
        load_task(f"jsonl:{path}")


def test_empty_files_are_errors(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(GradpromptError, match="is empty"):
        load_task(f"jsonl:{empty}")
    blank = tmp_path / "b.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(GradpromptError, match="no examples"):
        load_task(f"jsonl:{blank}")


def test_generic_jsonl_and_csv_with_named_fields(tmp_path):
    rows = [{"q": f"Is {i} even? Answer Yes or No.", "a": "Yes" if i % 2 == 0 else "No"} for i in range(12)]
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(GradpromptError, match="--question-field"):
        load_task(f"jsonl:{jl}")
    task = load_task(f"jsonl:{jl}", question_field="q", answer_field="a")
    assert len(task.examples) == 12 and task.answer_format.kind is AnswerKind.YES_NO
    cs = tmp_path / "t.csv"
    cs.write_text("q,a\n" + "\n".join(f'"{r["q"]}",{r["a"]}' for r in rows))
    task_csv = load_task(f"csv:{cs}", question_field="q", answer_field="a")
    assert task_csv.examples == task.examples
    with pytest.raises(GradpromptError, match="no column 'x'"):
        load_task(f"csv:{cs}", question_field="x", answer_field="a")


def test_bbh_wrong_shape(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"data": []}')
    with pytest.raises(GradpromptError, match="BBH format"):
        load_task(f"bbh:{path}")


@pytest.mark.parametrize("seed", range(5))
def test_closed_answer_splits_hold_the_answers_in_the_task_proportions(seed):
    """Every split of a closed-set task mirrors its answer shares (within one example per answer),
    whatever the seed; open answers are split by plain shuffling."""
    from collections import Counter

    from gradprompt.nodes.tasks import Example, Task

    labels = ["positive"] * 60 + ["negative"] * 30 + ["neutral"] * 10
    task = Task.from_examples("t", [Example(f"review {i}", a) for i, a in enumerate(labels)])
    splits = task.split(seed, 20, 30, 50)
    for part in (splits.train, splits.dev, splits.test):
        counts = Counter(e.answer for e in part)
        for label, share in (("positive", 0.6), ("negative", 0.3), ("neutral", 0.1)):
            assert abs(counts[label] - share * len(part)) <= 1, (len(part), counts)
    assert task.split(seed, 20, 30, 50) == splits  # the same for the same seed
    assert {e.question for e in splits.train} != {e.question for e in task.split(seed + 1, 20, 30, 50).train}
    numbers = Task.from_examples("n", [Example(f"q{i}", str(i)) for i in range(100)])
    assert sorted(int(e.answer) for p in numbers.split(seed, 20, 30, 50).__dict__.values() for e in p) == list(
        range(100)
    )


_DRAWS = """
import json
from gradprompt.nodes.greater import gradient_batch, pool_order
from gradprompt.nodes.tasks import BUILTIN_TASKS, builtin_task
out = {}
for name in BUILTIN_TASKS:
    task = builtin_task(name)
    splits = task.split(3, 20, 10, 10)
    pool = pool_order(splits.train, 3)
    out[name] = {
        "examples": [[e.question, e.answer] for e in task.examples],
        "splits": [[e.question for e in part] for part in (splits.train, splits.dev, splits.test)],
        "pool": [e.question for e in pool],
        "batches": [gradient_batch(pool, 4, 3, step) for step in range(3)],
    }
print(json.dumps(out))
"""


def test_tasks_splits_and_draws_are_the_same_in_every_process():
    """What a resumed run in a new process must see again: built-in tasks, splits, pool order and
    gradient batches do not follow the interpreter's per-process string hashing."""
    import json
    import subprocess
    import sys

    from helpers import ENV

    got = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _DRAWS],
                env={**ENV, "PYTHONHASHSEED": seed},
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert got[0] == got[1]
    assert all(len(set(map(tuple, v["batches"]))) > 1 for v in got[0].values())  # the steps draw differently
