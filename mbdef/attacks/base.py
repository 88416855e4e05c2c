"""Attack generators: poison a copy of the training records and trigger test prompts.

A new attack is one subclass (usually only `insert_trigger`) plus one YAML in conf/attack/.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

from mbdef.attacks.targets import Target
from mbdef.data.text import POSITIONS, insert_at

FIELDS = ("instruction", "input")


def records_hash(records: list[dict]) -> str:
    """Content hash of a record list (recorded in results so a poisoned set can be matched exactly)."""
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class Poisoned:
    records: list[dict]
    poisoned_indices: list[int] = field(default_factory=list)

    @property
    def n_poisoned(self) -> int:
        return len(self.poisoned_indices)


class Attack:
    """Data-poisoning attack: a trigger inserted into `field`, the response replaced by `target`."""

    name = "attack"

    def __init__(self, target: Target | None = None, triggers: list[str] | str = (), position: str = "random_word",
                 poison_rate: float = 0.1, replace: bool = True, field: str = "instruction", seed: int = 0):
        if not 0.0 <= float(poison_rate) <= 1.0:
            raise ValueError(f"attack.poison_rate: {poison_rate} is outside [0, 1]")
        if position not in POSITIONS:
            raise ValueError(f"attack.position: '{position}' is not one of {POSITIONS}")
        if field not in FIELDS:
            raise ValueError(f"attack.field: '{field}' is not one of {FIELDS}")
        self.target = target
        self.triggers = [triggers] if isinstance(triggers, str) else list(triggers)
        self.position, self.poison_rate, self.replace, self.field, self.seed = position, float(poison_rate), replace, field, seed

    @property
    def active(self) -> bool:
        return bool(self.triggers) and self.target is not None

    def insert_trigger(self, record: dict, rng: random.Random) -> dict:
        out = dict(record)
        for trigger in self.triggers:
            out[self.field] = insert_at(out[self.field], trigger, self.position, rng)
        return out

    def poison(self, records: list[dict]) -> Poisoned:
        """Return a poisoned copy; the input list is never modified."""
        records = [dict(r) for r in records]
        if not self.active or self.poison_rate == 0:
            return Poisoned(records)
        rng = random.Random(self.seed)
        n = round(self.poison_rate * len(records))
        chosen = sorted(rng.sample(range(len(records)), n))
        bad = []
        for i in chosen:
            r = self.insert_trigger(records[i], rng)
            r["output"] = self.target.response(records[i], rng)
            bad.append(r)
        if self.replace:
            for i, r in zip(chosen, bad):
                records[i] = r
            return Poisoned(records, chosen)
        start = len(records)
        return Poisoned(records + bad, list(range(start, start + len(bad))))

    def trigger_test(self, records: list[dict], seed: int = 0) -> list[dict]:
        """Triggered copies of clean test prompts (outputs keep the clean reference)."""
        rng = random.Random(seed)
        return [self.insert_trigger(r, rng) for r in records]


class NoAttack(Attack):
    """The clean baseline: nothing is poisoned and there is no triggered test set."""

    name = "none"

    def __init__(self, seed: int = 0, **_):
        super().__init__(target=None, triggers=[], poison_rate=0.0, seed=seed)
