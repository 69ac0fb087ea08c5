"""Using what a run found: a predictor that answers new questions with the run's prompt under the
run's reading (model, chat layout, extractor, readout), from Python, from a file or in a LangChain
chain.

A prompt's measured gain holds only under the reading it was measured with; pasted into another
pipeline it measures something else. So the predictor never takes the prompt alone: it takes the
run, and rebuilds every part of the reading from the run's settings.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gradprompt.errors import GradpromptError
from gradprompt.graph.run_index import run_values
from gradprompt.graph.run_inputs import with_run_inputs
from gradprompt.nodes.answering import answer_questions
from gradprompt.nodes.session import Session, load_inputs, session
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.tasks.confidence import wilson_interval
from gradprompt.nodes.tasks.loaders import ANSWER_FIELDS, QUESTION_FIELDS, as_text, jsonl_rows
from gradprompt.nodes.tasks.readout import CLOSED_KINDS, Readout, ReadoutMode, readout_of
from gradprompt.store.checkpoints import open_runs

PROMPTS = ("final", "initial")


@dataclass(frozen=True)
class Prediction:
    """One question's answer under the run's reading. ``probabilities``: every allowed answer's
    probability given that the answer is one of them (closed answer sets); ``reasoning``: what the
    model wrote before the extractor (empty for direct answers); ``correct``: only with a gold
    answer."""

    question: str
    answer: str | None
    text: str
    reasoning: str
    probabilities: dict[str, float] | None
    gold: str | None = None
    correct: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InputRow:
    line: int  # where the row is in its file, for error messages
    question: str
    gold: str | None


class Predictor:
    """A run's prompt with the run's reading. ``which`` says where the prompt came from: the run's
    final choice, its initial prompt, or text a person gave."""

    def __init__(
        self,
        settings: RunSettings,
        prompt_text: str,
        *,
        prompt_ids: Sequence[int] | None = None,
        which: str = "text",
        run_id: str | None = None,
        final: dict | None = None,
    ):
        self.settings = settings
        self.prompt_text = prompt_text
        self._prompt_ids = tuple(prompt_ids) if prompt_ids is not None else None
        self.which = which
        self.run_id = run_id
        self.final = final or {}

    @cached_property
    def session(self) -> Session:
        return session(self.settings)

    @cached_property
    def readout(self) -> Readout:
        """The run's reading of answers; it needs the task's data, not the model."""
        s = self.settings
        task, _ = load_inputs(s)
        return readout_of(task.answer_format, s.readout, s.max_new_tokens, s.metric)

    @cached_property
    def prompt_ids(self) -> tuple[int, ...]:
        """The prompt's token ids as the run held them (a run's prompts are ids, not text)."""
        if self._prompt_ids is not None:
            return self._prompt_ids
        return tuple(self.session.rt.encode_prompt(self.prompt_text))

    def allowed_answers(self, question: str) -> list[str]:
        """The answers a closed answer set allows for ``question`` (empty when answers are free)."""
        fmt = self.readout.fmt
        if fmt.kind not in CLOSED_KINDS:
            return []
        return [name for name, _ in Readout(fmt, ReadoutMode.CHOICE).options(question)]

    def check(self, rows: Sequence[InputRow], where: str = "input") -> None:
        """One clear error for the first row the run cannot answer: a gold answer outside the run's
        answer set, or a question that does not fit the model's context with the prompt."""
        fmt, rt, s = self.readout.fmt, self.session.rt, self.settings
        for row in rows:
            if not row.question:
                raise GradpromptError(f"{where} line {row.line}: the question is empty; fill it or remove the row")
            allowed = self.allowed_answers(row.question)
            if row.gold is not None and allowed and fmt.normalize_gold(row.gold) not in allowed:
                raise GradpromptError(
                    f"{where} line {row.line}: gold answer {row.gold!r} is not one of the run's answers "
                    f"({', '.join(allowed)}); correct it, or leave the answer out to predict only"
                )
            length = len(rt.layout.encode(row.question, self.prompt_ids).ids)
            length += len(rt.extractor_ids(self.readout.extractor(row.question)))
            need = length + s.max_new_tokens + fmt.max_answer_tokens
            if need > rt.context_limit:
                raise GradpromptError(
                    f"{where} line {row.line}: the question with the prompt and its reasoning needs {need} tokens "
                    f"but the model's context holds {rt.context_limit}; shorten the question"
                )

    def predict(
        self, questions: Sequence[str] | str, golds: Sequence[str | None] | None = None, label: str | None = None
    ) -> list[Prediction]:
        """Answer every question (one string is one question); ``golds``, where given, are judged
        the way the run judges them. ``label`` shows a progress bar."""
        questions = [q.strip() for q in ([questions] if isinstance(questions, str) else questions)]
        golds = list(golds) if golds is not None else [None] * len(questions)
        if len(golds) != len(questions):
            raise GradpromptError(f"{len(questions)} questions but {len(golds)} gold answers: give one per question")
        self.check([InputRow(i, q, g) for i, (q, g) in enumerate(zip(questions, golds, strict=True), 1)], "question")
        return self.answer_checked(questions, golds, label)

    def answer_checked(
        self, questions: list[str], golds: list[str | None], label: str | None = None
    ) -> list[Prediction]:
        """:meth:`predict` for questions already passed through :meth:`check`."""
        answered = answer_questions(
            self.session.rt,
            self.readout,
            self.prompt_ids,
            questions,
            self.settings.max_new_tokens,
            golds=golds,
            label=label,
        )
        return [
            Prediction(q, a.answer, a.text, a.reasoning, a.probabilities, g, a.correct)
            for q, g, a in zip(questions, golds, answered, strict=True)
        ]

    def as_runnable(self):
        """This predictor as a LangChain ``Runnable``: a question (or a dict with ``question``) in,
        the answer out; ``batch`` answers all its inputs in one batched decode."""
        from gradprompt.graph.predict_runnable import PredictorRunnable

        return PredictorRunnable(self)


def load(
    run_id: str,
    prompt: str = "final",
    *,
    run_dir=None,
    checkpointer: str | None = None,
    device: str | None = None,
) -> Predictor:
    """A predictor for a run: ``prompt`` is ``final`` (the run's choice), ``initial`` (the prompt
    it started from) or any other text, read the run's way. ``device`` moves the model, kept at
    the precision the run read answers at (other hardware can still flip a near tie)."""
    values = run_values(run_id, run_dir=run_dir, checkpointer=checkpointer)
    if not values.get("settings"):
        raise GradpromptError(f"run {run_id} has no checkpoint yet: resume it first (`gradprompt resume {run_id}`)")
    settings = dict(values["settings"])
    if device:
        from gradprompt.nodes.runtime.model_loading import pick_device, pick_dtype

        try:
            moved = pick_device(device)
        except RuntimeError:
            raise GradpromptError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
        if settings.get("dtype", "auto") == "auto":  # keep the precision the run was read at
            settings["dtype"] = str(pick_dtype(pick_device(settings.get("device")))).removeprefix("torch.")
        settings["device"] = str(moved)
    with_run_inputs(open_runs(run_dir, checkpointer), run_id, settings)
    final = values.get("final") or {}
    if prompt == "final":
        if not final.get("best"):
            raise GradpromptError(
                f"run {run_id} has not finished, so it has no final prompt: resume it "
                f"(`gradprompt resume {run_id}`), or pass --prompt initial or --prompt TEXT"
            )
        chosen, which = final["best"], "final"
    elif prompt == "initial":
        if not values.get("baseline"):
            raise GradpromptError(f"run {run_id} has no initial prompt recorded yet: resume it first")
        chosen, which = values["baseline"], "initial"
    else:
        return Predictor(RunSettings.model_validate(settings), prompt, which="text", run_id=run_id, final=final)
    return Predictor(
        RunSettings.model_validate(settings),
        chosen["text"],
        prompt_ids=chosen["prompt"],
        which=which,
        run_id=run_id,
        final=final,
    )


def _csv(path: Path) -> list[tuple[int, dict]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(enumerate(csv.DictReader(fh), start=2))


def _field_name(first: dict, given: str | None, run: str | None, candidates: tuple[str, ...]) -> str | None:
    if given:
        return given
    if run and run in first:
        return run
    return next((name for name in candidates if name in first), None)


def read_inputs(
    path: str | os.PathLike,
    question_field: str | None = None,
    answer_field: str | None = None,
    settings: RunSettings | None = None,
) -> list[InputRow]:
    """Questions (and gold answers, when the file has them) from a JSONL or CSV file. The fields
    default to the run's own, then to the usual names; a named field must be in every row."""
    path = Path(path)
    if not path.is_file():
        raise GradpromptError(f"input file not found: {path} (check --input)")
    if path.suffix.lower() not in (".jsonl", ".json", ".csv"):
        raise GradpromptError(f"input file {path} is neither .jsonl nor .csv: give questions one JSON object a line")
    try:
        rows = _csv(path) if path.suffix.lower() == ".csv" else list(jsonl_rows(path))
    except UnicodeDecodeError:
        raise GradpromptError(f"input file {path} is not UTF-8 text: save it as UTF-8") from None
    except csv.Error as exc:
        raise GradpromptError(f"input file {path} is not a readable CSV ({exc}); fix it or give JSONL") from None
    if not rows:
        raise GradpromptError(f"input file {path} holds no rows: it needs at least one question")
    first = rows[0][1]
    run_q = settings.question_field if settings else None
    run_a = settings.answer_field if settings else None
    qf = _field_name(first, question_field, run_q, QUESTION_FIELDS)
    if qf is None:
        raise GradpromptError(
            f"{path}: cannot tell which field holds the question (fields: {', '.join(sorted(map(str, first)))}); "
            "pass --question-field NAME"
        )
    af = _field_name(first, answer_field, run_a, ANSWER_FIELDS)
    out = []
    for lineno, row in rows:
        if row.get(qf) is None:
            raise GradpromptError(
                f"{path} line {lineno}: no field {qf!r} (pass --question-field if it is named otherwise)"
            )
        if answer_field and row.get(af) is None:
            raise GradpromptError(f"{path} line {lineno}: no field {af!r}, which --answer-field names")
        value = row.get(af) if af else None
        gold = "" if value is None else as_text(value).strip()  # a blank answer cell is no answer
        out.append(InputRow(lineno, as_text(row[qf]).strip(), gold or None))
    return out


def write_atomically(path: Path, lines: Sequence[str]) -> None:
    """All rows or none: written beside the target, then renamed over it."""
    if path.is_dir():
        raise GradpromptError(f"--out {path} is a folder: name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GradpromptError(f"cannot write {path} ({exc.strerror}); choose another --out") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def accuracy_of(predictions: Sequence[Prediction]) -> dict | None:
    """Accuracy with its 95% Wilson interval over the predictions that have a gold answer."""
    judged = [p.correct for p in predictions if p.correct is not None]
    if not judged:
        return None
    low, high = wilson_interval(sum(judged), len(judged))
    return {"accuracy": sum(judged) / len(judged), "right": sum(judged), "n": len(judged), "ci95": [low, high]}


def predict_file(
    predictor: Predictor,
    input_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
) -> tuple[list[Prediction], dict]:
    """Answer every row of a file; with ``out``, write one JSONL row per input there (all or
    nothing). Returns the predictions and a summary (accuracy with its interval when the file
    has gold answers, how often each answer was given)."""
    if out is not None and Path(out).is_dir():  # before any model work, not after it
        raise GradpromptError(f"--out {out} is a folder: name a file")
    rows = read_inputs(input_path, question_field, answer_field, predictor.settings)
    predictor.check(rows, str(input_path))
    predictions = predictor.answer_checked(
        [r.question for r in rows], [r.gold for r in rows], label="predict" if len(rows) > 1 else None
    )
    if out is not None:
        write_atomically(Path(out), [json.dumps(p.to_json()) + "\n" for p in predictions])
    counts = Counter(p.answer for p in predictions)
    summary = {
        "run_id": predictor.run_id,
        "prompt": predictor.prompt_text,
        "which": predictor.which,
        "rows": len(predictions),
        "out": str(out) if out is not None else None,
        "accuracy": accuracy_of(predictions),
        "answers": {str(a): n for a, n in counts.most_common()},
    }
    return predictions, summary
