"""A task: examples with gold answers, their answer type, and deterministic splits."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from gradprompt.errors import GradpromptError
from gradprompt.nodes.tasks.answer_types import AnswerFormat, detect_answer_format
from gradprompt.nodes.tasks.readout import CLOSED_KINDS

SPLIT_METHOD = "stratified-1"  # part of a run's split fingerprint: other methods give other splits


def stratified(examples: list[Example], answer_of, rng: random.Random) -> list[Example]:
    """``examples`` (already shuffled) reordered so that every prefix holds each gold answer in about
    its share of the whole: the i-th of n examples with one answer sits at (i + u) / n, u uniform in
    [0, 1). Cut into train, dev and test, each split then mirrors the task's answer proportions.

    Without it, a small selection pool drawn at random can be lopsided (one seed put 36 positive and
    14 negative reviews of a balanced task in a 50-example pool), and a search that scores prompts
    on it learns to say the pool's majority answer: better on the pool, worse on every other split.
    """
    answers = [answer_of(ex.answer) for ex in examples]
    counts, seen = Counter(answers), Counter()
    keyed = []
    for a, ex in zip(answers, examples, strict=True):
        keyed.append(((seen[a] + rng.random()) / counts[a], ex))
        seen[a] += 1
    keyed.sort(key=lambda k: k[0])
    return [ex for _, ex in keyed]


@dataclass(frozen=True)
class Example:
    question: str
    answer: str

    def to_json(self) -> dict:
        return {"question": self.question, "answer": self.answer}


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    dev: list[Example]
    test: list[Example]


@dataclass(frozen=True)
class Task:
    """Examples plus how their answers are read.

    ``held_out`` carries examples from a separate file (e.g. a dataset's official test file): when
    present, the test split is drawn from it and train/dev from ``examples``, so they never mix.
    """

    name: str
    examples: list[Example]
    answer_format: AnswerFormat
    source: str = ""
    held_out: list[Example] = field(default_factory=list)

    @classmethod
    def from_examples(cls, name: str, examples: list[Example], source: str = "", held_out=None) -> Task:
        if not examples:
            raise GradpromptError(f"task {name!r} has no examples ({source or 'no source'}): add examples to it")
        everything = examples + list(held_out or [])
        fmt = detect_answer_format([e.question for e in everything], [e.answer for e in everything])
        return cls(name, examples, fmt, source, list(held_out or []))

    def split(self, seed: int, train: int, dev: int, test: int) -> Splits:
        """Disjoint train/dev/test, the same for the same seed and sizes.

        Sizes are upper bounds taken in the order train, dev, test from one shuffled list; a split
        that would be empty is an error because no score can be reported on it. For a closed answer
        set the list is stratified by gold answer (see :func:`stratified`), so that every split
        holds the answers in the task's proportions.
        """
        rng = random.Random(seed)
        pool = self._ordered(self.examples, rng)
        if self.held_out:
            held = self._ordered(self.held_out, rng)
            parts = {"train": pool[:train], "dev": pool[train : train + dev], "test": held[:test]}
        else:
            parts = {
                "train": pool[:train],
                "dev": pool[train : train + dev],
                "test": pool[train + dev : train + dev + test],
            }
        wanted = {"train": train, "dev": dev, "test": test}
        for name, items in parts.items():
            if wanted[name] > 0 and not items:
                raise GradpromptError(
                    f"the {name} split of task {self.name!r} is empty: the task has {self._count()} and "
                    f"--train {train} --dev {dev} --test {test} ask for {train + dev + test}; "
                    f"{self._what_fits(train, dev, test)} would fit"
                )
        return Splits(parts["train"], parts["dev"], parts["test"])

    def _ordered(self, examples: list[Example], rng: random.Random) -> list[Example]:
        order = list(examples)
        rng.shuffle(order)
        if self.answer_format.kind in CLOSED_KINDS:
            return stratified(order, self.answer_format.normalize_gold, rng)
        return order

    def _count(self) -> str:
        if self.held_out:
            return f"{len(self.examples)} examples for train and dev and {len(self.held_out)} held out for test"
        return f"{len(self.examples)} examples"

    def _what_fits(self, train: int, dev: int, test: int) -> str:
        """Split sizes in the asked proportions that the task's examples can fill."""
        if self.held_out:
            n, scale = len(self.examples), min(1.0, len(self.examples) / max(train + dev, 1))
            t = max(1, int(train * scale))
            d = max(1, min(n - t, int(dev * scale)))
            return f"--train {t} --dev {d} --test {min(test, len(self.held_out)) or 1}"
        n = len(self.examples)
        scale = min(1.0, n / max(train + dev + test, 1))
        t, d = max(1, int(train * scale)), max(1, int(dev * scale))
        return f"--train {t} --dev {d} --test {max(1, min(n - t - d, int(test * scale) or 1))}"
