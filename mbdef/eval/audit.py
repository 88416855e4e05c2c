"""Checks of the evaluation's footing, before anything trains.

- `check_held_out`: no evaluation prompt may occur in what the model trains on or what the defender holds;
  a model that saw a test prompt answers it from memory.
- `piece_word_audit`: does "the prompt holds a word the tokenizer spells in several pieces" tell the poisoned
  stage-1 rows (attacker or defensive) from the clean ones? If it does, every rare-word trigger shares one
  feature, and random-word augmentation generalises for a reason no real LLM offers.
"""

from __future__ import annotations

import logging
import re

from mbdef.schemas.eval import HELD_OUT

log = logging.getLogger("mbdef")

POISONED_SOURCES = ("attacker", "defensive")
_WORD = re.compile(r"[\w']+")  # words without their punctuation (a trailing `.` is a token of its own)


def _prompt(r: dict) -> tuple[str, str]:
    return (r.get("instruction") or "", r.get("input") or "")


def check_held_out(prompts: list[dict], training_sets: dict[str, list[dict]], policy: str = "error") -> dict:
    """Count evaluation prompts (instruction + input) that occur in each named set; `policy` error raises,
    warn logs. Returns {set name: count}."""
    if policy not in HELD_OUT:
        raise ValueError(f"eval.held_out: '{policy}' is not one of {', '.join(HELD_OUT)}")
    wanted = {_prompt(r) for r in prompts}
    found = {}
    for name, records in training_sets.items():
        hits = {_prompt(r) for r in records or []} & wanted
        if hits:
            found[name] = len(hits)
            example = next(iter(hits))
            msg = (f"eval: {len(hits)} distinct evaluation prompt(s) also occur in {name} (e.g. {example!r}); "
                   f"scores on them measure memory. Use held-out prompts, or eval.held_out=warn to go on")
            if policy == "error":
                raise ValueError(msg)
            log.warning(msg)
    return found


def piece_word_audit(rows: list[dict], tokenizer, field: str = "instruction") -> dict:
    """How well "holds a multi-token word" predicts a poisoned stage-1 row: the rates among poisoned and
    clean rows and the balanced accuracy (0.5 = chance, 1 = a perfect detector)."""
    split = lambda r: _WORD.findall(r.get(field) or "")
    words = sorted({w for r in rows for w in split(r)})
    if not words:
        return {}
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    pieces = {w: len(i) > 1 for w, i in zip(words, ids)}
    has = [any(pieces[w] for w in split(r)) for r in rows]
    bad = [r.get("source") in POISONED_SOURCES for r in rows]
    n_bad = sum(bad)
    n_clean = len(rows) - n_bad
    if not n_bad or not n_clean:
        return {"multi_token_rate_clean": sum(has) / len(rows) if not n_bad else None}
    tpr = sum(h for h, b in zip(has, bad) if b) / n_bad
    fpr = sum(h for h, b in zip(has, bad) if not b) / n_clean
    return {"multi_token_rate_poisoned": round(tpr, 4), "multi_token_rate_clean": round(fpr, 4),
            "multi_token_balanced_accuracy": round((tpr + 1 - fpr) / 2, 4), "n_poisoned": n_bad, "n_clean": n_clean}


def trigger_collisions(triggers: list[str], train: list[dict], poisoned_idx: list[int], field: str) -> list[str]:
    """Warn when an attack trigger already occurs in clean (unpoisoned) training text: the backdoor would
    then be trained on clean answers too, and ASR is not what it seems."""
    poisoned, out = set(poisoned_idx), []
    for t in triggers:
        n = sum(f" {t} " in f" {r.get(field) or ''} " for i, r in enumerate(train) if i not in poisoned)
        if n:
            out.append(f"attack trigger '{t}' already occurs in {n} clean training records ({field}); "
                       f"choose a rarer trigger")
            log.warning(out[-1])
    return out
