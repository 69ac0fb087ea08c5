"""How readable a prompt is, as one figure a person can check: the share of its words that are
English words.

A word is *known* when its Zipf frequency in wordfreq's English list is at least
:data:`KNOWN_ZIPF` (about once in ten million words of running text and commoner): "review",
"sentiment", "beg" are known; "Inify", "iADEREDLadr", "spoilering", "HUGES" and single letters
other than "a" and "I" are not, nor is a word in mixed case ("doK"). The figure is
cheap, needs no model and says what a person sees first: fragments and non-words. The prompt's
negative log-likelihood under the task model, which every score also carries, says how natural
the word order is; the two together describe what a prompt reads like.
"""

from __future__ import annotations

import re
from functools import lru_cache

KNOWN_ZIPF = 2.0
WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


@lru_cache(maxsize=65536)
def is_known(word: str) -> bool:
    """Whether ``word`` is an English word (or a common contraction such as "Let's"). Of single
    letters only "a" and "I" are words; wordfreq counts every letter as common."""
    from wordfreq import zipf_frequency

    if len(word) == 1:
        return word in ("a", "A", "I")
    if not (word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())):
        return False  # mixed case ("doK", "iADEREDLadr") is no word, whatever its letters spell
    return zipf_frequency(word, "en") >= KNOWN_ZIPF or zipf_frequency(word.lower(), "en") >= KNOWN_ZIPF


def words(text: str) -> list[str]:
    return WORD.findall(text)


def non_words(text: str) -> list[str]:
    """The words of ``text`` a person would not recognise, in order."""
    return [w for w in words(text) if not is_known(w)]


def readability(text: str) -> dict:
    """``known_words``: share of words that are English words (1.0 for a prompt without words);
    ``non_words``: the ones that are not."""
    found = words(text)
    odd = [w for w in found if not is_known(w)]
    return {"known_words": round(1 - len(odd) / len(found), 4) if found else 1.0, "non_words": odd}
