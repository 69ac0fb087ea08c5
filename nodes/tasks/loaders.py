"""Read tasks from files: BBH JSON, GSM8K JSONL, FOLIO JSONL, and generic JSONL/CSV.

A task spec is ``KIND:PATH`` (``bbh:data/bbh/navigate.json``) or ``builtin:NAME``. Every problem
with a file is reported with the file, the line and what to do about it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from gradprompt.errors import GradpromptError
from gradprompt.nodes.tasks.task import Example, Task

QUESTION_FIELDS = ("question", "input", "prompt", "query", "text")
ANSWER_FIELDS = ("answer", "target", "label", "output", "gold")
FILE_KINDS = ("bbh", "gsm8k", "folio", "jsonl", "csv")


def _require_file(path: Path, kind: str) -> Path:
    if not path.exists():
        raise GradpromptError(f"dataset not found: {path} (check the path after '{kind}:')")
    if path.is_file() and path.stat().st_size == 0:
        raise GradpromptError(f"dataset file {path} is empty: it needs at least one example")
    return path


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GradpromptError(
                    f"{path} line {lineno}: not valid JSON ({exc.msg}); fix or remove that line"
                ) from None
            if not isinstance(row, dict):
                raise GradpromptError(f"{path} line {lineno}: expected a JSON object per line")
            yield lineno, row


def _field(row: dict, name: str, path: Path, lineno: int, hint: str) -> str:
    if name not in row or row[name] is None:
        raise GradpromptError(f"{path} line {lineno}: no field {name!r} ({hint})")
    return as_text(row[name])


def as_text(value) -> str:
    """A JSON value as the text a question or answer holds (lists and objects as JSON)."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)


def _pick_field(row: dict, given: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    if given:
        return given
    for name in candidates:
        if name in row:
            return name
    raise GradpromptError(
        f"{path}: cannot tell which field holds the {what} (fields: {', '.join(sorted(row))}); pass --{what}-field NAME"
    )


def load_bbh(path: Path) -> list[Example]:
    _require_file(path, "bbh")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GradpromptError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise GradpromptError(f"{path}: expected a JSON object with a list under 'examples' (BBH format)")
    out = []
    for i, row in enumerate(data["examples"]):
        if not isinstance(row, dict) or "input" not in row or "target" not in row:
            raise GradpromptError(f"{path}: example {i} needs 'input' and 'target'")
        out.append(Example(str(row["input"]).strip(), str(row["target"]).strip()))
    return out


def load_gsm8k(path: Path) -> list[Example]:
    _require_file(path, "gsm8k")
    out = []
    for lineno, row in jsonl_rows(path):
        question = _field(row, "question", path, lineno, "GSM8K rows have 'question' and 'answer'")
        answer = _field(row, "answer", path, lineno, "GSM8K rows have 'question' and 'answer'")
        if "####" not in answer:
            raise GradpromptError(f"{path} line {lineno}: the answer has no '#### <number>' final line")
        out.append(Example(question.strip(), answer.rsplit("####", 1)[1].strip()))
    return out


def load_folio(path: Path) -> list[Example]:
    _require_file(path, "folio")
    out = []
    for lineno, row in jsonl_rows(path):
        hint = "FOLIO rows have 'premises', 'conclusion' and 'label'"
        premises = row.get("premises")
        if premises is None:
            raise GradpromptError(f"{path} line {lineno}: no field 'premises' ({hint})")
        if isinstance(premises, str):
            premises = [p for p in premises.split("\n") if p.strip()]
        conclusion = _field(row, "conclusion", path, lineno, hint)
        label = _field(row, "label", path, lineno, hint).strip()
        label = "Uncertain" if label.lower() in ("unknown", "uncertain") else label.capitalize()
        lines = "\n".join(f"- {p.strip()}" for p in premises)
        question = (
            f"Premises:\n{lines}\nConclusion: {conclusion.strip()}\n"
            "Based on the premises, is the conclusion True, False, or Uncertain?"
        )
        out.append(Example(question, label))
    return out


def _json_kind(value) -> str:
    """The JSON type of an answer as a user would name it; a quoted number counts as a number."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        try:
            float(value.replace(",", ""))
            return "number"
        except ValueError:
            return "text"
    return "list or object"


def load_jsonl(path: Path, question_field: str | None = None, answer_field: str | None = None) -> list[Example]:
    _require_file(path, "jsonl")
    out, qf, af = [], question_field, answer_field
    kinds: dict[str, tuple[int, object]] = {}  # answer type -> its first line and value
    typed = False  # all-string answers may mix numbers and words freely (free text)
    for lineno, row in jsonl_rows(path):
        qf = _pick_field(row, qf, QUESTION_FIELDS, "question", path)
        af = _pick_field(row, af, ANSWER_FIELDS, "answer", path)
        hint = "pass --question-field/--answer-field if the fields are named differently"
        out.append(Example(_field(row, qf, path, lineno, hint).strip(), _field(row, af, path, lineno, hint).strip()))
        kinds.setdefault(_json_kind(row[af]), (lineno, row[af]))
        typed = typed or not isinstance(row[af], str)
    if typed and len(kinds) > 1:
        seen = "; ".join(f"line {line} has {kind} {value!r}" for kind, (line, value) in kinds.items())
        raise GradpromptError(
            f"{path}: answers of mixed types ({seen}); give every answer the same type, e.g. quote them all as text"
        )
    return out


def load_csv(path: Path, question_field: str | None = None, answer_field: str | None = None) -> list[Example]:
    _require_file(path, "csv")
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        row0 = dict.fromkeys(header, "")
        qf = _pick_field(row0, question_field, QUESTION_FIELDS, "question", path)
        af = _pick_field(row0, answer_field, ANSWER_FIELDS, "answer", path)
        for name in (qf, af):
            if name not in header:
                raise GradpromptError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
        for lineno, row in enumerate(reader, start=2):
            if row.get(qf) is None or row.get(af) is None:
                raise GradpromptError(f"{path} line {lineno}: missing a value for {qf!r} or {af!r}")
            out.append(Example(row[qf].strip(), row[af].strip()))
    return out


def _split_files(folder: Path, loader) -> tuple[list[Example], list[Example]]:
    """A dataset folder with separate train and test files keeps them apart."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".jsonl", ".json", ".csv"))
    if not files:
        raise GradpromptError(f"{folder} holds no .jsonl/.json/.csv files")
    test = [p for p in files if any(k in p.stem.lower() for k in ("test", "validation", "valid", "dev"))]
    train = [p for p in files if p not in test]
    if not train:
        train, test = test, []
    examples = [e for p in train for e in loader(p)]
    held = [e for p in test for e in loader(p)]
    return examples, held


def load_task(spec: str, question_field: str | None = None, answer_field: str | None = None) -> Task:
    """Load ``KIND:PATH`` or ``builtin:NAME`` into a :class:`Task`."""
    from gradprompt.nodes.tasks.builtin import BUILTIN_TASKS, builtin_task

    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise GradpromptError(
            f"task spec {spec!r} is not KIND:PATH; use builtin:NAME ({', '.join(BUILTIN_TASKS)}) "
            f"or one of {', '.join(k + ':PATH' for k in FILE_KINDS)}"
        )
    kind = kind.lower()
    if kind == "builtin":
        return builtin_task(rest)
    if kind == "examples":
        from gradprompt.nodes.tasks.inline import load_inline

        return load_inline(spec)
    if kind not in FILE_KINDS:
        raise GradpromptError(f"unknown task kind {kind!r} in {spec!r}: use builtin or {', '.join(FILE_KINDS)}")
    loaders = {
        "bbh": load_bbh,
        "gsm8k": load_gsm8k,
        "folio": load_folio,
        "jsonl": lambda p: load_jsonl(p, question_field, answer_field),
        "csv": lambda p: load_csv(p, question_field, answer_field),
    }
    path = _require_file(Path(rest).expanduser(), kind)
    if path.is_dir() and kind == "bbh":
        raise GradpromptError(f"{path} is a folder: point bbh: at one task file, e.g. {path}/navigate.json")
    if path.is_dir():
        examples, held = _split_files(path, loaders[kind])
        name = path.name
    else:
        examples, held = loaders[kind](path), []
        name = path.stem
    if not examples:
        raise GradpromptError(f"{path} has no examples: it needs at least one question with an answer")
    return Task.from_examples(name, examples, source=spec, held_out=held)
