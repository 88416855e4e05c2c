"""The `defense` group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from mbdef.data.text import POSITIONS
from mbdef.schemas.checks import doc

TRIGGER_KINDS = ("rare_word", "phrase", "mixed")
BEHAVIOUR_MODES = ("distinct", "shared")
STAGE2_INSERTS = ("defensive", "random")


@dataclass
class DefenseConfig:
    name: str = doc("the defense's name in reports and run directories")
    _target_: str = doc("the mbdef.defenses class this config builds")
    seed: int = doc("run seed; the defense's own streams (triggers, choice, recovery set) derive from it", ge=0)


@dataclass
class CleanFinetuneConfig(DefenseConfig):
    clean_size: int = doc("clean samples from the defender's pool for stage 2", ge=1)


@dataclass
class MBDefenseConfig(CleanFinetuneConfig):
    n_triggers: int = doc("T: the number of defensive triggers", ge=1)
    trigger_kind: str = doc("generated defensive triggers (never the attacker's)", one_of=TRIGGER_KINDS)
    triggers: Optional[List[str]] = doc("explicit defensive triggers instead of generated ones", None)
    behaviours: Any = doc("defensive behaviours: a mode, or a list of strings, one per trigger",
                          one_of=BEHAVIOUR_MODES, or_list=True)
    rate_per_trigger: float = doc("defensive samples per trigger, as a fraction of the training set (added)",
                                  gt=0, le=1)
    position: str = doc("where a defensive trigger goes in a sample", one_of=POSITIONS)
    stage2_trigger_fraction: float = doc("fraction of the recovery set carrying a defensive trigger (1.0: the "
                                         "paper)", ge=0, le=1)


@dataclass
class RecoveryOnlyConfig(MBDefenseConfig):
    defensive_poisoning: bool = doc("stage 1 with defensive poisoning (false: the attacker's data only)")


@dataclass
class RandomInsertConfig(RecoveryOnlyConfig):
    stage2_insert: str = doc("what stage 2 inserts: defensive (MB-Defense) | random (fresh random words)",
                             one_of=STAGE2_INSERTS)


@dataclass
class OracleUnlearnConfig(CleanFinetuneConfig):
    trigger_fraction: float = doc("fraction of the recovery rows carrying the attacker's own trigger", ge=0, le=1)


@dataclass
class PDBConfig(DefenseConfig):
    trigger: Optional[str] = doc("the proactive defensive trigger; null: a generated rare word", None)
    rate: float = doc("defensive samples (from the defender's pool, added) as a fraction of the training set",
                      gt=0, le=1)
