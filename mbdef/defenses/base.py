"""Defenses decide what each training stage sees: `plan(train, defense_pool) -> TrainingPlan`.

Stage 1 is instruction tuning on the (possibly attacker-poisoned) training set, plus whatever the defense
adds; stage 2, when present, is a short fine-tune on a small clean set from the defender's pool. Budgets
(steps, learning rates) live in the `trainer` config so that every defense with a stage 2 gets the same
budget unless a run overrides it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mbdef import seeding
from mbdef.keys import CLEAN, DEFENSIVE
from mbdef.schemas import check_values
from mbdef.schemas.defense import CleanFinetuneConfig


@dataclass
class TrainingPlan:
    """What each stage trains on, and what evaluation needs to know of the defense.

    `stage1` is the training set given to `plan` followed by the rows the defense adds (`stage1[len(train):]`,
    labelled `added_source`); `stage2_sources` labels each stage-2 row (mbdef.keys: the row sources)."""

    stage1: list[dict]
    stage2: list[dict] | None = None
    added_source: str = DEFENSIVE
    stage2_sources: list[str] | None = None
    defensive_triggers: list[str] = field(default_factory=list)    # planted in stage 1: probed after each stage
    defensive_behaviours: list[str] = field(default_factory=list)  # what each defensive trigger was taught
    inference_prefix: str | None = None      # put before every evaluation prompt (PDB's reserved trigger)
    reference_words: list[str] = field(default_factory=list)  # the defense's own words, which the representation
    #                                          analysis compares with the attacker's trigger (none: no such words)
    details: dict = field(default_factory=dict)  # the defense's own counts, for results.json
    # A change of the trained weights after stage 1 (and before stage 2, if any): (model, calibration token ids)
    # -> what it did; `calibration`: records of the defender's pool it needs forward passes on.
    weight_transform: Callable[[Any, list[list[int]]], dict] | None = None
    calibration: list[dict] = field(default_factory=list)
    # Inference-time hooks, used in the final evaluation only (after_stage1 measures the model without them).
    # Each is bound once, before training, to (the reference model as (model, tokenizer) or None, the suspect
    # model's tokenizer), and what it returns has stats(): `input_filter` -> records -> records (the user's
    # text, e.g. ONION); `decoder` -> a replacement for mbdef.eval.generate (e.g. CleanGen, sampling).
    input_filter: Callable[[Any, Any], Callable[[list[dict]], list[dict]]] | None = None
    decoder: Callable[[Any, Any], Callable[..., list[str]]] | None = None
    reference: bool = False  # the hooks need a reference model: the run's clean model before stage 1, or
    reference_path: str | None = None  # a local HF model directory instead
    # Added to stage 2's training loss: (model, batch) -> (term, {name: value logged with the stage}).
    training_loss: Callable[[Any, dict], tuple[Any, dict]] | None = None

    def describe(self) -> dict:
        """results.json's `defense_info`."""
        out = dict(self.details)
        if self.defensive_behaviours:
            out.update(defensive_triggers=self.defensive_triggers, defensive_behaviours=self.defensive_behaviours)
        if self.inference_prefix:
            out["inference_prefix"] = self.inference_prefix
        return out

    @property
    def inference_time(self) -> bool:
        return self.input_filter is not None or self.decoder is not None


class Defense:
    name = "defense"
    # A positive control that reads the attacker's trigger (an arm no real defender can run): run() hands
    # it the attack as `plan(..., attacker=...)`; every other defense sees the training set and its pool only.
    oracle = False

    def plan(self, train: list[dict], defense_pool: list[dict]) -> TrainingPlan:
        raise NotImplementedError


def plan_stages(defense: Defense, train: list[dict], defense_pool: list[dict], attacker=None) -> TrainingPlan:
    """The defense's plan from what its threat model allows it to see: the training set and its own clean
    pool; only a positive control (`oracle`) is also handed the attacker's trigger insertion."""
    return defense.plan(train, defense_pool, attacker=attacker) if defense.oracle else defense.plan(train, defense_pool)


def sample_clean(pool: list[dict], size: int, seed: int) -> list[dict]:
    """The defender's small clean set: `size` records of its pool, in a random order."""
    if size <= 0:
        raise ValueError(f"defense.clean_size: must be positive, got {size}")
    if size > len(pool):
        raise ValueError(f"defense.clean_size: {size} exceeds the defender's clean pool of {len(pool)} records "
                         f"(raise data.n_defense_pool or lower defense.clean_size)")
    return [dict(r) for r in seeding.stream(seed, seeding.DEFENSE_RECOVERY).sample(pool, size)]


class NoDefense(Defense):
    """Stage 1 only: the model as the (poisoned) training set makes it."""

    name = "none"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def plan(self, train, defense_pool):
        return TrainingPlan(stage1=train)


class CleanFinetune(Defense):
    """The standard baseline: stage 2 fine-tunes on the small clean set, same budget as MB-Defense's stage 2."""

    name = "finetune"

    def __init__(self, clean_size: int = CleanFinetuneConfig.clean_size, seed: int = 0):
        check_values(CleanFinetuneConfig, "defense.", clean_size=clean_size)
        self.clean_size, self.seed = clean_size, seed

    def plan(self, train, defense_pool):
        clean = sample_clean(defense_pool, self.clean_size, self.seed)
        return TrainingPlan(stage1=train, stage2=clean, stage2_sources=[CLEAN] * len(clean),
                            details={"clean_size": len(clean)})
