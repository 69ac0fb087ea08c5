"""A model-free source of edits in the spirit of GrIPS (Prasad et al., EACL 2023): cut the prompt
into phrases, then delete one, swap two, or put back one that an earlier step deleted.

GrIPS splits with a constituency parser; here a phrase ends at a punctuation mark and a new one
starts at a function word ("the", "of", "and", ...; a run of them stays together), which needs no
parser and gives the same kind of pieces on instruction-like text: "Classify | the sentiment | of
the review | ." Marks stay where they are when phrases move. Phrases are runs of whole word units
(:mod:`nodes.runtime.word_units`), so every edit keeps whole words. GrIPS's paraphrase
operation needs a generator; refinement (:mod:`nodes.refine`) is that source here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from gradprompt.nodes.prompt_ids import PromptIds
from gradprompt.nodes.runtime import word_units

_FUNCTION_WORDS = (
    "a an the of to in on for with by from at as and or but if then than that which who whom whose "
    "what when where why how is are was were be been being this these those it its your you their "
    "each every all any some no not so because while after before"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


@dataclass(frozen=True)
class PhraseEdit:
    prompt: PromptIds
    op: str  # delete | swap | add
    phrase: str  # the phrase deleted, added, or the two swapped ("A <-> B")
    removed: tuple[int, ...] = ()  # for a deletion: the phrase's tokens, kept so a later step can add it back

    def describe(self) -> str:
        verb = {"delete": "delete phrase", "swap": "swap phrases", "add": "add back phrase"}[self.op]
        return f"{verb} {self.phrase!r}"


@dataclass(frozen=True)
class Piece:
    """A phrase (units that move together) or a punctuation mark (which stays where it is)."""

    units: tuple[PromptIds, ...]
    mark: bool = False


def pieces_of(tokenizer, prompt: Sequence[int]) -> list[Piece]:
    """The prompt as phrases and the punctuation marks between them, in order."""
    spans = word_units.units(tokenizer, prompt)
    out: list[Piece] = []
    for i, u in enumerate(spans):
        ids = tuple(prompt[u.start : u.end])
        if not u.is_word:
            out.append(Piece((ids,), mark=True))
            continue
        function = u.text.strip().lower() in FUNCTION_WORDS
        after_function = i > 0 and spans[i - 1].text.strip().lower() in FUNCTION_WORDS
        if out and not out[-1].mark and not (function and not after_function):
            out[-1] = Piece((*out[-1].units, ids))
        else:
            out.append(Piece((ids,)))
    return out


def phrases(tokenizer, prompt: Sequence[int]) -> list[list[PromptIds]]:
    """The prompt's phrases, each a list of units' token ids, in order (marks left out)."""
    return [list(p.units) for p in pieces_of(tokenizer, prompt) if not p.mark]


def _tidy(parts: Sequence[Piece]) -> list[PromptIds]:
    """Units of ``parts`` with no mark at the start and no two marks in a row (the later stays)."""
    out: list[Piece] = []
    for p in parts:
        if p.mark and (not out or out[-1].mark):
            if out:
                out[-1] = p
            continue
        out.append(p)
    return [u for p in out for u in p.units]


def _text(tokenizer, units: Sequence[PromptIds]) -> str:
    text = word_units.pieces(tokenizer)
    return "".join(text[t] for u in units for t in u).strip()


def all_edits(tokenizer, encode, prompt: Sequence[int], deleted: Sequence[Sequence[int]] = ()) -> list[PhraseEdit]:
    """Every deletion, swap of two phrases (the marks stay in place) and re-addition (of each
    phrase in ``deleted``, before each phrase and at the end), without duplicates or no-ops."""
    parts = pieces_of(tokenizer, prompt)
    where = [i for i, p in enumerate(parts) if not p.mark]
    build = lambda seq: word_units.join(tokenizer, encode, [], _tidy(seq))  # noqa: E731
    original = tuple(prompt)
    out: dict[PromptIds, PhraseEdit] = {}

    def offer(edit: PhraseEdit) -> None:
        if edit.prompt and edit.prompt != original and edit.prompt not in out:
            out[edit.prompt] = edit

    if len(where) > 1:
        for i in where:
            removed = tuple(t for u in parts[i].units for t in u)
            offer(PhraseEdit(build(parts[:i] + parts[i + 1 :]), "delete", _text(tokenizer, parts[i].units), removed))
        for a, i in enumerate(where):
            for j in where[a + 1 :]:
                swapped = list(parts)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                pair = f"{_text(tokenizer, parts[i].units)} <-> {_text(tokenizer, parts[j].units)}"
                offer(PhraseEdit(build(swapped), "swap", pair))
    for gone in deleted:
        units = tuple(word_units.split(tokenizer, gone))
        if not units:
            continue
        end = len(parts)
        while end > 0 and parts[end - 1].mark:
            end -= 1  # before the closing punctuation
        spots = [*where, end]
        for at in dict.fromkeys(spots):
            offer(PhraseEdit(build([*parts[:at], Piece(units), *parts[at:]]), "add", _text(tokenizer, units)))
    return list(out.values())


def sample_edits(
    tokenizer, encode, prompt: Sequence[int], deleted: Sequence[Sequence[int]], n: int, rng: random.Random
) -> list[PhraseEdit]:
    """``n`` edits drawn at random (seeded), one of each kind first so all kinds get tried."""
    edits = all_edits(tokenizer, encode, prompt, deleted)
    rng.shuffle(edits)
    by_kind: dict[str, list[PhraseEdit]] = {}
    for e in edits:
        by_kind.setdefault(e.op, []).append(e)
    first = [kind[0] for kind in by_kind.values()]
    rest = [e for e in edits if e not in first]
    return (first + rest)[:n]
