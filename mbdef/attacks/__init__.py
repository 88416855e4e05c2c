"""attacks: poison a copy of the training records; trigger test prompts."""

from mbdef.attacks.badnet import BadNet
from mbdef.attacks.base import Attack, NoAttack, Poisoned, insert_at, records_hash
from mbdef.attacks.targets import REFUSAL, Fixed, Refusal, Target

__all__ = ["Attack", "BadNet", "Fixed", "NoAttack", "Poisoned", "REFUSAL", "Refusal", "Target", "insert_at", "records_hash"]
