"""Oracle unlearning: a positive control, not a defense. It reads the attacker's trigger, which no real
defender knows, and spends the same stage-2 budget as every defense on the same clean recovery rows, but
with the attacker's own trigger inserted where the attack puts it (MTBA: one of its triggers per row, CTBA:
all in order, the prefix attacks at the start) and the clean answer kept. What it leaves shows whether this
backdoor can be removed at this budget on this model at all; every defense is read against it.
"""

from __future__ import annotations

from mbdef import seeding
from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.keys import CLEAN, RECOVERY
from mbdef.schemas import check_values
from mbdef.schemas.defense import OracleUnlearnConfig as D


class OracleUnlearn(Defense):
    name = "oracle_unlearn"
    oracle = True

    def __init__(self, clean_size: int = D.clean_size, trigger_fraction: float = D.trigger_fraction, seed: int = 0):
        check_values(D, "defense.", clean_size=clean_size, trigger_fraction=trigger_fraction)
        self.clean_size, self.trigger_fraction, self.seed = clean_size, trigger_fraction, seed

    def plan(self, train, defense_pool, attacker=None):
        if attacker is None or not attacker.triggers:
            raise ValueError("defense=oracle_unlearn: this run has no attacker's trigger to unlearn (no attack, and "
                             "data that no known attack poisoned); use it with an attack")
        clean = sample_clean(defense_pool, self.clean_size, self.seed)  # the rows finetune and MB-Defense get
        n = round(self.trigger_fraction * len(clean))
        rng = seeding.stream(self.seed, seeding.ORACLE_PLACEMENT)
        stage2 = [attacker.insert_trigger(r, rng) for r in clean[:n]] + clean[n:]
        sources = [RECOVERY] * n + [CLEAN] * (len(clean) - n)
        return TrainingPlan(stage1=list(train), stage2=stage2, stage2_sources=sources,
                            details={"oracle": True, "attacker_triggers": list(attacker.triggers),
                                     "clean_size": len(clean), "n_triggered_recovery": n})
