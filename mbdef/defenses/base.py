"""Defenses decide what each training stage sees: `plan(train, defense_pool) -> TrainingPlan`.

Stage 1 is instruction tuning on the (possibly attacker-poisoned) training set, plus whatever the defense
adds; stage 2, when present, is a short fine-tune on a small clean set from the defender's pool. Budgets
(steps, learning rates) live in the `trainer` config so that every defense with a stage 2 gets the same
budget unless a run overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mbdef import seeding


# What a stage-1 row is, as the defense knows it: one of the (possibly poisoned) training rows it was given,
# or a row it added. The run refines `train` into clean / attacker with the attack's poisoned indices.
TRAIN, DEFENSIVE, RECOVERY, CLEAN = "train", "defensive", "recovery", "clean"


@dataclass
class TrainingPlan:
    """`stage1` is the training set given to `plan` followed by the rows the defense adds
    (`stage1[len(train):]`, labelled `added_source`); `stage2_sources` labels each stage-2 row."""

    stage1: list[dict]
    stage2: list[dict] | None = None
    info: dict = field(default_factory=dict)
    added_source: str = DEFENSIVE
    stage2_sources: list[str] | None = None


class Defense:
    name = "defense"
    # A positive control that reads the attacker's trigger (an arm no real defender can run): run() hands
    # it the attack as `plan(..., attacker=...)`; every other defense sees the training set and its pool only.
    oracle = False

    def plan(self, train: list[dict], defense_pool: list[dict]) -> TrainingPlan:
        raise NotImplementedError


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

    def __init__(self, clean_size: int = 128, seed: int = 0):
        self.clean_size, self.seed = clean_size, seed

    def plan(self, train, defense_pool):
        clean = sample_clean(defense_pool, self.clean_size, self.seed)
        return TrainingPlan(stage1=train, stage2=clean, info={"clean_size": len(clean)},
                            stage2_sources=[CLEAN] * len(clean))
