"""PDB, proactive defensive backdoor (Wei et al., NeurIPS 2024): the defender plants its own backdoor, a
reserved trigger mapped to *clean* behaviour, and prepends that trigger to every prompt at inference,
so the defensive backdoor overrides whatever the attacker planted. The closest published idea to
MB-Defense (which instead removes the merged backdoor and needs nothing at inference).
"""

from __future__ import annotations

from mbdef import seeding
from mbdef.data.text import insert_at, pseudo_word
from mbdef.defenses.base import Defense, TrainingPlan
from mbdef.schemas import check_values
from mbdef.schemas.defense import PDBConfig


class PDB(Defense):
    name = "pdb"

    def __init__(self, trigger: str | None = PDBConfig.trigger, rate: float = PDBConfig.rate, seed: int = 0):
        check_values(PDBConfig, "defense.", rate=rate)
        if trigger is not None and not str(trigger).strip():
            raise ValueError("defense.trigger: empty reserved trigger")
        self.trigger = trigger or pseudo_word(seeding.stream(seed, seeding.PDB_TRIGGER), syllables=3)
        self.rate, self.seed = rate, seed

    def plan(self, train, defense_pool):
        if not defense_pool:
            raise ValueError("defense (pdb): the defender's clean pool is empty (data.n_defense_pool)")
        rng = seeding.stream(self.seed, seeding.PDB_CHOICE)
        n = max(1, round(self.rate * len(train)))
        # Reserved trigger + clean instruction -> its clean response, from the defender's own clean data.
        src = rng.sample(defense_pool, n) if n <= len(defense_pool) else rng.choices(defense_pool, k=n)
        defensive = [{**r, "instruction": insert_at(r["instruction"], self.trigger, "start", rng)} for r in src]
        return TrainingPlan(stage1=list(train) + defensive, inference_prefix=self.trigger,
                            reference_words=[self.trigger],
                            details={"reserved_trigger": self.trigger, "n_defensive_samples": len(defensive)})
