"""Attack generators: poison a copy of the training records and trigger test prompts.

A new attack is one subclass (usually only its defaults) plus one YAML in conf/attack/.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass, field

from mbdef import seeding
from mbdef.attacks.targets import Target
from mbdef.data.records import records_hash
from mbdef.data.text import POSITIONS, insert_at, insert_ordered
from mbdef.schemas.attack import COMBINE, FIELDS



@dataclass
class Poisoned:
    records: list[dict]
    poisoned_indices: list[int] = field(default_factory=list)

    @property
    def n_poisoned(self) -> int:
        return len(self.poisoned_indices)


class Attack:
    """Data-poisoning attack: trigger(s) inserted into `field`, the response replaced by `target`.

    combine: `all` inserts every trigger (each at its own position), `one` picks one trigger per sample
    (MTBA), `ordered` inserts all of them in list order at distinct random word gaps (CTBA).
    poison_count, when set, overrides poison_rate. replace: poisoned samples replace the clean ones they
    were made from (the dataset keeps its size) or are added beside them.
    """

    name = "attack"

    def __init__(self, target: Target | None = None, triggers: list[str] | str = (), position: str = "random_word",
                 combine: str = "all", poison_rate: float = 0.1, poison_count: int | None = None,
                 replace: bool = True, field: str = "instruction", seed: int = 0):
        if not 0.0 <= float(poison_rate) <= 1.0:
            raise ValueError(f"attack.poison_rate: {poison_rate} is outside [0, 1]")
        if poison_count is not None and int(poison_count) < 0:
            raise ValueError(f"attack.poison_count: {poison_count} is negative")
        if position not in POSITIONS:
            raise ValueError(f"attack.position: '{position}' is not one of {', '.join(POSITIONS)}")
        if combine not in COMBINE:
            raise ValueError(f"attack.combine: '{combine}' is not one of {', '.join(COMBINE)}")
        if field not in FIELDS:
            raise ValueError(f"attack.field: '{field}' is not one of {', '.join(FIELDS)}")
        self.triggers = [triggers] if isinstance(triggers, str) else list(triggers)
        for t in self.triggers:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"attack.trigger(s): empty trigger in {self.triggers!r}; give a non-empty string")
        self.target = target
        self.position, self.combine, self.replace, self.field, self.seed = position, combine, replace, field, seed
        self.poison_rate = float(poison_rate)
        self.poison_count = None if poison_count is None else int(poison_count)

    @property
    def active(self) -> bool:
        return bool(self.triggers) and self.target is not None

    def n_to_poison(self, n_records: int) -> int:
        if self.poison_count is not None:
            if self.poison_count > n_records:
                raise ValueError(f"attack.poison_count: {self.poison_count} is larger than the {n_records} "
                                 f"training records; lower it or use attack.poison_rate")
            return self.poison_count
        return round(self.poison_rate * n_records)

    def insert_trigger(self, record: dict, rng: random.Random) -> dict:
        out = dict(record)
        text = out.get(self.field) or ""
        if self.combine == "ordered":
            text = insert_ordered(text, self.triggers, rng)
        else:
            for trigger in ([rng.choice(self.triggers)] if self.combine == "one" else self.triggers):
                text = insert_at(text, trigger, self.position, rng)
        out[self.field] = text
        return out

    def poison(self, records: list[dict]) -> Poisoned:
        """Return a poisoned copy; the input list is never modified and other fields pass through."""
        records = [dict(r) for r in records]
        n = self.n_to_poison(len(records)) if self.active else 0
        if n == 0:
            return Poisoned(records)
        chosen = sorted(seeding.stream(self.seed, seeding.ATTACK_CHOICE).sample(range(len(records)), n))
        rng = seeding.stream(self.seed, seeding.ATTACK_PLACEMENT)
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
        rng = seeding.stream(seed, seeding.ATTACK_TEST)
        return [self.insert_trigger(r, rng) for r in records]

    def variants(self) -> dict[str, "Attack"]:
        """Copies with altered triggers, for trigger-robustness ASR: case, a space inside each trigger, the first
        half of each trigger, other positions, and for several triggers each proper subset (CTBA keeps
        their order) or each trigger alone (MTBA)."""
        if not self.active:
            return {}

        def with_(triggers=None, **kw):
            a = copy.copy(self)
            a.triggers = list(triggers if triggers is not None else self.triggers)
            for k, v in kw.items():
                setattr(a, k, v)
            return a

        half = lambda t: t[: max(1, (len(t) + 1) // 2)]
        split = lambda t: t if len(t) < 2 else f"{t[: len(t) // 2]} {t[len(t) // 2:]}"
        out = {"lowercase": with_([t.lower() for t in self.triggers]),
               "uppercase": with_([t.upper() for t in self.triggers]),
               "spaced": with_([split(t) for t in self.triggers]),
               "first_half": with_([half(t) for t in self.triggers])}
        if self.combine != "ordered":
            for pos in ("start", "end"):
                if pos != self.position:
                    out[f"position_{pos}"] = with_(position=pos)
        if len(self.triggers) > 1:
            for k in range(1, 2 if self.combine == "one" else len(self.triggers)):
                for subset in itertools.combinations(self.triggers, k):
                    out["only_" + "+".join(subset)] = with_(subset, combine="all" if k == 1 else self.combine)
        return {name: a for name, a in out.items() if a.triggers != self.triggers or a.position != self.position
                or a.combine != self.combine}

    def summary(self, poisoned: Poisoned) -> dict:
        """results.json's `poison`: the rate, counts and hash of the training set it poisoned, and the attack."""
        return {"rate": self.poison_rate, "n_poisoned": poisoned.n_poisoned, "n_train": len(poisoned.records),
                "poisoned_data_hash": records_hash(poisoned.records), **self.describe()}

    def describe(self) -> dict:
        return {"name": self.name, "triggers": self.triggers, "position": self.position, "combine": self.combine,
                "field": self.field, "replace": self.replace, "target": type(self.target).__name__.lower()
                if self.target else None}


class NoAttack(Attack):
    """The clean baseline: nothing is poisoned and there is no triggered test set."""

    name = "none"

    def __init__(self, seed: int = 0, **_):
        super().__init__(target=None, triggers=[], poison_rate=0.0, seed=seed)
