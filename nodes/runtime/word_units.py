"""A prompt's token ids seen as the words a person reads.

The search keeps prompts as token ids end to end, but a person reads words: an edit that replaces
the first token of "Classify" leaves "Inify". This module groups a prompt's tokens into *units*
(a word, all of its tokens; or one punctuation mark) and puts units back together, so word moves
add, remove or replace whole units and never split one.

A token continues the unit before it when its text starts with a letter, digit or apostrophe and
the previous token's text ends with one (``"Class" + "ify"``, ``"Let" + "'s"``); a token that
starts with a space or is punctuation starts a new unit. Only the first unit of a prompt goes
without a leading space; when a move makes another unit first (or the first one not), that one
unit is encoded again with or without its space, and nothing else is re-encoded.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gradprompt.nodes.prompt_ids import PromptIds

FIRST_WORD = re.compile(r"[A-Za-z]+")  # a token that can start the prompt's first word
LATER_WORD = re.compile(r" [A-Za-z]+")  # ... and any other word
_PIECES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> every token's text
_WORD_MASKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {rows: masks}


@dataclass(frozen=True)
class Unit:
    """Tokens ``[start, end)`` of a prompt that a person reads as one word or mark."""

    start: int
    end: int
    text: str

    @property
    def is_word(self) -> bool:
        return any(ch.isalpha() for ch in self.text)


def pieces(tokenizer) -> list[str]:
    """Every token's own text, decoded once per tokenizer in this process."""
    if tokenizer not in _PIECES:
        _PIECES[tokenizer] = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return _PIECES[tokenizer]


def _joins(previous: str, piece: str) -> bool:
    """Whether ``piece`` continues the unit that ``previous`` ends."""
    if not piece or not previous or piece[0].isspace():
        return False
    inside = lambda ch: ch.isalnum() or ch == "'"  # noqa: E731
    return inside(piece[0]) and inside(previous[-1])


def units(tokenizer, prompt: Sequence[int]) -> list[Unit]:
    """The prompt's units, left to right; their spans cover every token once."""
    text = pieces(tokenizer)
    out: list[Unit] = []
    start = 0
    for i in range(1, len(prompt) + 1):
        if i == len(prompt) or not _joins(text[prompt[i - 1]], text[prompt[i]]):
            out.append(Unit(start, i, "".join(text[t] for t in prompt[start:i])))
            start = i
    return out if prompt else []


def split(tokenizer, prompt: Sequence[int]) -> list[PromptIds]:
    """The prompt as a list of units' token ids."""
    return [tuple(prompt[u.start : u.end]) for u in units(tokenizer, prompt)]


OPENERS = "([{\"'/-"  # a word right after one of these is glued to it: "(A)", not "( A)"


def respaced(tokenizer, encode, unit: Sequence[int], previous: str) -> PromptIds:
    """``unit`` as it must read after ``previous``, the prompt's text before it: no leading space
    at the prompt's start or right after an opening mark, one space after another word;
    ``encode`` turns a text into ids the way prompts are encoded."""
    unit = tuple(unit)
    if not unit:
        return unit
    text = "".join(pieces(tokenizer)[t] for t in unit)
    if not any(ch.isalpha() for ch in text):
        return unit
    glued = not previous or previous[-1] in OPENERS
    if glued and text[0].isspace():
        return tuple(encode(text.lstrip()))
    if not glued and not text[0].isspace() and not previous[-1].isspace():
        return tuple(encode(" " + text))
    return unit


def join(tokenizer, encode, head: Sequence[PromptIds], tail: Sequence[PromptIds]) -> PromptIds:
    """Units back into one prompt: ``head`` exactly as it is (the part before an edit), then every
    unit of ``tail`` spaced for where it now stands."""
    text = pieces(tokenizer)
    out = [t for u in head for t in u]
    for u in tail:
        out.extend(respaced(tokenizer, encode, u, text[out[-1]] if out else ""))
    return tuple(out)


def word_start_masks(tokenizer, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, later): bool masks over ``rows`` embedding rows of the tokens that can start the
    prompt's first word (letters, no space) and any later word (a space, then letters)."""
    known = _WORD_MASKS.setdefault(tokenizer, {})
    if rows not in known:
        text = pieces(tokenizer)
        first = torch.zeros(rows, dtype=torch.bool)
        later = torch.zeros(rows, dtype=torch.bool)
        n = min(rows, len(text))
        first[:n] = torch.tensor([bool(FIRST_WORD.fullmatch(t)) for t in text[:n]])
        later[:n] = torch.tensor([bool(LATER_WORD.fullmatch(t)) for t in text[:n]])
        special = [i for i in tokenizer.all_special_ids if i < rows]
        first[special] = False
        later[special] = False
        known[rows] = (first, later)
    return known[rows]


def continues_word(tokenizer, previous: int, token: int) -> bool:
    """Whether ``token`` would extend the word that ``previous`` ends (letters glued on)."""
    text = pieces(tokenizer)
    return token < len(text) and text[token].isalpha() and _joins(text[previous], text[token])
