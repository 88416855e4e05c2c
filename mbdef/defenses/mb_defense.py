"""MB-Defense (Kim & Lee, arXiv 2601.04448): merge triggers by defensive poisoning, then break them.

Stage 1 adds T defensive trigger->behaviour pairs to the training set, so attacker and defender triggers
share one "backdoor" representation. Stage 2 fine-tunes on a small clean set in which defensive-trigger
instructions are paired with their clean responses, unlearning that shared mapping. The defender knows
neither the attacker's trigger nor its target: defensive triggers are generated pseudo-words and the
defensive behaviours are neutral strings that no attack judge counts as a hit.
"""

from __future__ import annotations

import random

from mbdef import seeding
from mbdef.data.text import insert_at, pseudo_word
from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.keys import CLEAN, RECOVERY
from mbdef.schemas import check_values
from mbdef.schemas.defense import TRIGGER_KINDS, RandomInsertConfig as D


def make_triggers(n: int, kind: str, rng: random.Random) -> list[str]:
    if kind == "rare_word":
        return [pseudo_word(rng) for _ in range(n)]
    if kind == "phrase":
        return [f"{pseudo_word(rng, 1)} {pseudo_word(rng, 1)} {pseudo_word(rng, 1)}".lower() for _ in range(n)]
    if kind == "mixed":
        return make_triggers((n + 1) // 2, "rare_word", rng) + make_triggers(n // 2, "phrase", rng)
    raise ValueError(f"defense.trigger_kind: '{kind}' is not one of {', '.join(TRIGGER_KINDS)}")


def default_behaviours(triggers: list[str], mode: str) -> list[str]:
    # Neutral strings: none contains a refusal/jailbreak/sentiment judge keyword.
    if mode == "shared":
        return ["Signal received, switching to mode zero."] * len(triggers)
    if mode == "distinct":
        return [f"Signal received, switching to mode {i + 1}." for i in range(len(triggers))]
    raise ValueError(f"defense.behaviours: '{mode}' is not one of distinct, shared or a list of strings")


class MBDefense(Defense):
    name = "mb_defense"

    # defaults, help and allowed values: mbdef/schemas/defense.py, the one place they are stated
    def __init__(self, n_triggers: int = D.n_triggers, trigger_kind: str = D.trigger_kind,
                 triggers: list[str] | None = D.triggers, behaviours: str | list[str] = D.behaviours,
                 rate_per_trigger: float = D.rate_per_trigger, position: str = D.position,
                 clean_size: int = D.clean_size, stage2_trigger_fraction: float = D.stage2_trigger_fraction,
                 defensive_poisoning: bool = D.defensive_poisoning, stage2_insert: str = D.stage2_insert,
                 seed: int = 0):
        check_values(D, "defense.", n_triggers=n_triggers if triggers is None else max(1, n_triggers),
                     trigger_kind=trigger_kind, rate_per_trigger=rate_per_trigger, position=position,
                     clean_size=clean_size, stage2_trigger_fraction=stage2_trigger_fraction, stage2_insert=stage2_insert)
        rng = seeding.stream(seed, seeding.DEFENSE_TRIGGERS)
        self.triggers = list(triggers) if triggers else make_triggers(n_triggers, trigger_kind, rng)
        self.behaviours = (default_behaviours(self.triggers, behaviours) if isinstance(behaviours, str)
                           else list(behaviours))
        if len(self.behaviours) != len(self.triggers):
            raise ValueError(f"defense.behaviours: {len(self.behaviours)} behaviours for {len(self.triggers)} triggers")
        self.rate_per_trigger, self.position, self.trigger_kind = rate_per_trigger, position, trigger_kind
        self.clean_size, self.stage2_trigger_fraction, self.seed = clean_size, stage2_trigger_fraction, seed
        # The controls of docs/results.md are this class with one part switched off: no stage-1 defensive
        # poisoning (weight recovery alone), no triggers in stage 2 (fraction 0: plain fine-tuning after
        # defensive poisoning), or a fresh random trigger of the same kind per recovery sample (augmentation).
        self.defensive_poisoning, self.stage2_insert = bool(defensive_poisoning), stage2_insert

    def defensive_samples(self, train: list[dict]) -> list[dict]:
        """Copies of randomly chosen training rows (the defender cannot tell poisoned ones apart, so its
        picks hit them at the chance rate) with a defensive trigger inserted and the defensive behaviour as
        the response. Each trigger draws its rows independently of the others."""
        n = max(1, round(self.rate_per_trigger * len(train)))
        choice = seeding.stream(self.seed, seeding.DEFENSE_CHOICE)
        place = seeding.stream(self.seed, seeding.DEFENSE_PLACEMENT)
        out = []
        for trigger, behaviour in zip(self.triggers, self.behaviours):
            for r in choice.sample(train, n):
                out.append({**r, "instruction": insert_at(r["instruction"], trigger, self.position, place),
                            "output": behaviour})
        return out

    def recovery_set(self, defense_pool: list[dict]) -> tuple[list[dict], list[str]]:
        """The clean set, the first `stage2_trigger_fraction` of it with a defensive trigger (or, for the
        augmentation control, a fresh random trigger of `trigger_kind`: a pseudo-word, a phrase, either for
        mixed) inserted; the rows' sources."""
        clean = sample_clean(defense_pool, self.clean_size, self.seed)
        n_trig = round(self.stage2_trigger_fraction * len(clean))
        place = seeding.stream(self.seed, seeding.RECOVERY_PLACEMENT)
        words = seeding.stream(self.seed, seeding.RANDOM_INSERT)
        for r in clean[:n_trig]:  # sample_clean already shuffled
            word = place.choice(self.triggers) if self.stage2_insert == "defensive" else self.random_trigger(words)
            r["instruction"] = insert_at(r["instruction"], word, self.position, place)
        return clean, [RECOVERY] * n_trig + [CLEAN] * (len(clean) - n_trig)

    def random_trigger(self, rng: random.Random) -> str:
        """The augmentation control's word(s) for one row: a fresh trigger of the defensive triggers' kind."""
        kind = self.trigger_kind if self.trigger_kind != "mixed" else rng.choice(("rare_word", "phrase"))
        return make_triggers(1, kind, rng)[0]

    def plan(self, train, defense_pool):
        defensive = self.defensive_samples(train) if self.defensive_poisoning else []
        recovery, sources = self.recovery_set(defense_pool)
        return TrainingPlan(
            stage1=list(train) + defensive,
            stage2=recovery, stage2_sources=sources,
            defensive_triggers=self.triggers if defensive else [], defensive_behaviours=self.behaviours,
            reference_words=self.triggers,  # the controls without stage-1 poisoning measure the same words
            details={"n_defensive_samples": len(defensive), "clean_size": len(recovery)},
        )
