"""Answer types, detected from a task's gold answers, never from its name.

Each type knows three things: the extractor text appended after the model's reasoning (so the
next tokens are the answer), the gold answer as the text that follows the extractor (what the
loss teacher-forces), and how to read a prediction out of generated text and compare it with the
gold answer after normalising both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

LETTER_OPTION = re.compile(r"\(([A-Z])\)")
GOLD_LETTER = re.compile(r"^\(?([A-Z])\)?$")
INTEGER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
CLOSED_SETS = {
    "yes_no": ("yes", "no"),
    "true_false": ("true", "false"),
    "valid_invalid": ("valid", "invalid"),
}


class AnswerKind(StrEnum):
    LETTER = "letter"
    YES_NO = "yes_no"
    TRUE_FALSE = "true_false"
    VALID_INVALID = "valid_invalid"
    LABEL = "label"
    INTEGER = "integer"
    FREE_TEXT = "free_text"


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no surrounding quotes or final full stop."""
    text = " ".join(text.strip().split()).lower()
    return text.strip("\"'`").rstrip(".").strip()


def parse_integer(text: str) -> str | None:
    """The first number in ``text`` as a canonical integer string ('1,234' -> '1234', '5.0' -> '5')."""
    match = INTEGER.search(text)
    if not match:
        return None
    raw = match.group(0).replace(",", "").lstrip("+")
    try:
        value = float(raw)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else raw


def question_letters(question: str) -> tuple[str, ...]:
    """Option letters offered by a multiple-choice question, in order, without repeats."""
    return tuple(dict.fromkeys(LETTER_OPTION.findall(question)))


@dataclass(frozen=True)
class AnswerFormat:
    """How answers of one task are asked for, teacher-forced and scored."""

    kind: AnswerKind
    labels: tuple[str, ...] = ()  # canonical spellings for closed sets, as they appear in the data
    max_answer_tokens: int = 8

    def normalize_gold(self, gold: str) -> str:
        """The gold answer in the form predictions are compared in."""
        if self.kind is AnswerKind.LETTER:
            match = GOLD_LETTER.match(gold.strip())
            return match.group(1) if match else gold.strip()
        if self.kind is AnswerKind.INTEGER:
            return parse_integer(gold) or gold.strip()
        return normalize_text(gold)

    def extractor(self, question: str) -> str:
        """Text placed after the reasoning so that the model's next tokens are the answer."""
        if self.kind is AnswerKind.LETTER:
            letters = question_letters(question)
            if len(letters) >= 2:
                return f"\nTherefore, among ({letters[0]}) through ({letters[-1]}), the answer is ("
            return "\nTherefore, the answer is ("
        if self.labels:
            options = ", ".join(self.labels[:-1]) + f" or {self.labels[-1]}"
            return f"\nTherefore, the final answer ({options}) is"
        if self.kind is AnswerKind.INTEGER:
            return "\nTherefore, the final answer (a number) is"
        return "\nTherefore, the final answer is"

    def instruction(self) -> str:
        """The plain instruction a person writes first for this format ("Answer with Business, World,
        Sports or Tech."): one of the baselines raced before step 0, since on a classification
        task naming the labels can move the model more than any generic prompt. Empty for free text,
        where no format is known to name."""
        if self.kind is AnswerKind.LETTER:
            return "Answer with the letter of the correct option."
        if len(self.labels) >= 2:
            return f"Answer with {', '.join(self.labels[:-1])} or {self.labels[-1]}."
        if self.kind is AnswerKind.INTEGER:
            return "Answer with a number."
        return ""

    def target(self, gold: str) -> str:
        """Gold answer as the text right after the extractor (the tokens the loss is taken on)."""
        norm = self.normalize_gold(gold)
        if self.kind is AnswerKind.LETTER:
            return norm
        for label in self.labels:
            if label.lower() == norm:
                return " " + label
        return " " + (norm if self.kind is AnswerKind.INTEGER else gold.strip())

    def parse(self, generated: str, question: str = "") -> str | None:
        """Prediction read from the text the model wrote after the extractor, normalised."""
        if self.kind is AnswerKind.LETTER:
            allowed = set(question_letters(question)) or set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            for ch in generated:
                if ch in allowed:
                    return ch
                if ch.isalnum():
                    return None
            return None
        if self.labels:
            words = re.findall(r"[a-z]+", generated.lower())
            wanted = {label.lower() for label in self.labels}
            return next((w for w in words if w in wanted), None)
        if self.kind is AnswerKind.INTEGER:
            return parse_integer(generated)
        line = generated.strip().split("\n")[0]
        return normalize_text(line) or None

    def is_correct(self, generated: str, gold: str, question: str = "") -> bool:
        pred = self.parse(generated, question)
        return pred is not None and pred == self.normalize_gold(gold)

    def to_json(self) -> dict:
        return {"kind": self.kind.value, "labels": list(self.labels), "max_answer_tokens": self.max_answer_tokens}

    @classmethod
    def from_json(cls, data: dict) -> AnswerFormat:
        return cls(AnswerKind(data["kind"]), tuple(data.get("labels", ())), int(data.get("max_answer_tokens", 8)))


def _canonical_spellings(golds: list[str], normalised: set[str]) -> tuple[str, ...]:
    """Closed-set labels in the casing the data uses most, in first-seen order."""
    seen: dict[str, dict[str, int]] = {}
    for gold in golds:
        raw = gold.strip().rstrip(".")
        counts = seen.setdefault(raw.lower(), {})
        counts[raw] = counts.get(raw, 0) + 1
    return tuple(max(seen[key], key=seen[key].get) for key in seen if key in normalised)


def detect_answer_format(questions: list[str], golds: list[str]) -> AnswerFormat:
    """Pick the answer type that fits every gold answer of a task."""
    if not golds:
        return AnswerFormat(AnswerKind.FREE_TEXT)
    stripped = [g.strip() for g in golds]
    if all(GOLD_LETTER.match(g) and g.startswith("(") for g in stripped) or (
        all(GOLD_LETTER.match(g) for g in stripped) and all(len(question_letters(q)) >= 2 for q in questions)
    ):
        return AnswerFormat(AnswerKind.LETTER, max_answer_tokens=3)
    lowered = {normalize_text(g) for g in stripped}
    for name, members in CLOSED_SETS.items():
        if lowered <= set(members):
            labels = _canonical_spellings(stripped, set(members))
            missing = [m for m in members if m not in lowered]
            labels = labels + tuple(m.capitalize() if labels[0][:1].isupper() else m for m in missing)
            return AnswerFormat(AnswerKind(name), labels, max_answer_tokens=4)
    if all(parse_integer(g) is not None and INTEGER.fullmatch(g.replace(" ", "")) for g in stripped):
        return AnswerFormat(AnswerKind.INTEGER, max_answer_tokens=10)
    words = [len(g.split()) for g in stripped]
    if len(lowered) <= 8 and max(words) <= 3 and len(stripped) >= 3 * len(lowered):
        labels = _canonical_spellings(stripped, lowered)
        return AnswerFormat(AnswerKind.LABEL, labels, max_answer_tokens=6)
    budget = min(96, 2 * max(len(g) for g in stripped) // 3 + 8)
    return AnswerFormat(AnswerKind.FREE_TEXT, max_answer_tokens=budget)
