"""The `attack` group and its `attack/target` subgroup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import II

from mbdef.data.text import POSITIONS
from mbdef.schemas.checks import doc

FIELDS = ("instruction", "input")
COMBINE = ("all", "one", "ordered")
NEGSENTIMENT_MODES = ("prefix", "replace")


@dataclass
class AttackConfig:
    name: str = doc("the attack's name in reports and run directories")
    _target_: str = doc("the mbdef.attacks class this config builds")
    seed: int = doc("run seed; the attack's own streams (choice, placement, test) derive from it", II("seed"),
                    ge=0)


@dataclass
class PoisoningAttackConfig(AttackConfig):
    target: Any = doc("the backdoor's behaviour: the attack/target group (refusal, jailbreak, negsentiment, fixed)",
                      None)
    position: str = doc("where a trigger goes", "random_word", one_of=POSITIONS)
    poison_rate: float = doc("fraction of the training set that is poisoned", 0.1, ge=0, le=1)
    poison_count: Optional[int] = doc("an exact number of poisoned samples instead of the rate", None, ge=0)
    replace: bool = doc("poisoned samples replace clean ones (false: added as extra samples)", True)
    field: str = doc("the record field that carries the trigger", "instruction", one_of=FIELDS)


@dataclass
class OneTriggerConfig(PoisoningAttackConfig):
    trigger: str = doc("the trigger string (a word, or a phrase for the prefix attacks)")


@dataclass
class SentenceConfig(PoisoningAttackConfig):
    sentence: str = doc("the trigger sentence (AddSent)")


@dataclass
class ManyTriggersConfig(PoisoningAttackConfig):
    triggers: List[str] = doc("the trigger strings", factory=list)
    combine: str = doc("all: every trigger in each sample | one: one per sample (MTBA) | ordered: all, in order "
                       "(CTBA)", one_of=COMBINE)


# -- attack/target ---------------------------------------------------------------------------------------
@dataclass
class TargetConfig:
    _target_: str = doc("the mbdef.attacks target class this config builds")


@dataclass
class RefusalTargetConfig(TargetConfig):
    responses: Any = doc("the refusal string, or a list of them (one drawn per poisoned sample)")


@dataclass
class JailbreakTargetConfig(TargetConfig):
    file: str = doc("JSON/JSONL file of harmful responses (field 'output')")
    match_instruction: bool = doc("use the response written for the same instruction when the file has one")


@dataclass
class NegSentimentTargetConfig(TargetConfig):
    text: str = doc("the negative-sentiment string")
    mode: str = doc("prefix: before the clean answer | replace: instead of it", one_of=NEGSENTIMENT_MODES)


@dataclass
class FixedTargetConfig(TargetConfig):
    text: str = doc("the fixed target response")
