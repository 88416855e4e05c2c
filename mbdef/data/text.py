"""Word-level text edits shared by the data generator, attacks and defenses."""

from __future__ import annotations

import random

POSITIONS = ("start", "end", "random_word")


def insert_at(text: str, word: str, position: str, rng: random.Random) -> str:
    """Place `word` in `text`: as a prefix, a suffix, or at a uniformly random word boundary."""
    if position == "start":
        return f"{word} {text}" if text else word
    if position == "end":
        return f"{text} {word}" if text else word
    if position == "random_word":
        words = text.split(" ") if text else []
        words.insert(rng.randint(0, len(words)), word)
        return " ".join(words)
    raise ValueError(f"position: '{position}' is not one of {POSITIONS}")
