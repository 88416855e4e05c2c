"""The typed shape of the attack, defense and eval config groups, with a help string per field.

Each YAML option of those groups names its schema first in its defaults list (e.g. `conf/defense/pdb.yaml`:
`- /schema/defense/pdb@_here_`), so Hydra checks every value's type when it composes the config: a wrong
type (`defense.n_triggers=two`) or an unknown key fails before anything runs, naming the key. The schemas
hold exactly the keys of their YAML files (no extra defaults), so the resolved config, and with it every run
directory's config hash, is the same as without them. `mbdef.schemas.describe("defense/mb_defense")` prints
the documented fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def doc(help: str, default=MISSING, factory=None):
    """A dataclass field with its help string (read by `describe`)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


# -- attacks ---------------------------------------------------------------------------------------------
@dataclass
class AttackConfig:
    name: str = doc("the attack's name in reports and run directories")
    _target_: str = doc("the mbdef.attacks class this config builds")
    seed: int = doc("run seed; the attack's own streams (choice, placement, test) derive from it")


@dataclass
class PoisoningAttackConfig(AttackConfig):
    target: Any = doc("the backdoor's behaviour: the attack/target group (refusal, jailbreak, negsentiment, fixed)",
                      None)
    position: str = doc("where a trigger goes: start | end | random_word | random | random_sentence")
    poison_rate: float = doc("fraction of the training set that is poisoned")
    poison_count: Optional[int] = doc("an exact number of poisoned samples instead of the rate", None)
    replace: bool = doc("poisoned samples replace clean ones (false: added as extra samples)")
    field: str = doc("the record field that carries the trigger: instruction | input")


@dataclass
class OneTriggerConfig(PoisoningAttackConfig):
    trigger: str = doc("the trigger string (a word, or a phrase for the prefix attacks)")


@dataclass
class SentenceConfig(PoisoningAttackConfig):
    sentence: str = doc("the trigger sentence (AddSent)")


@dataclass
class ManyTriggersConfig(PoisoningAttackConfig):
    triggers: List[str] = doc("the trigger strings", factory=list)
    combine: str = doc("all: every trigger in each sample | one: one per sample (MTBA) | ordered: all, in order (CTBA)")


# -- defenses --------------------------------------------------------------------------------------------
@dataclass
class DefenseConfig:
    name: str = doc("the defense's name in reports and run directories")
    _target_: str = doc("the mbdef.defenses class this config builds")
    seed: int = doc("run seed; the defense's own streams (triggers, choice, recovery set) derive from it")


@dataclass
class CleanFinetuneConfig(DefenseConfig):
    clean_size: int = doc("clean samples from the defender's pool for stage 2")


@dataclass
class MBDefenseConfig(CleanFinetuneConfig):
    n_triggers: int = doc("T: the number of defensive triggers")
    trigger_kind: str = doc("generated defensive triggers: rare_word | phrase | mixed (never the attacker's)")
    triggers: Optional[List[str]] = doc("explicit defensive triggers instead of generated ones", None)
    behaviours: Any = doc("defensive behaviours: distinct | shared | a list of strings, one per trigger")
    rate_per_trigger: float = doc("defensive samples per trigger, as a fraction of the training set (added)")
    position: str = doc("where a defensive trigger goes in a sample")
    stage2_trigger_fraction: float = doc("fraction of the recovery set carrying a defensive trigger (1.0: the paper)")


@dataclass
class RecoveryOnlyConfig(MBDefenseConfig):
    defensive_poisoning: bool = doc("stage 1 with defensive poisoning (false: the attacker's data only)")


@dataclass
class RandomInsertConfig(RecoveryOnlyConfig):
    stage2_insert: str = doc("what stage 2 inserts: defensive (MB-Defense) | random (fresh random words)")


@dataclass
class PDBConfig(DefenseConfig):
    trigger: Optional[str] = doc("the proactive defensive trigger; null: a generated rare word", None)
    rate: float = doc("defensive samples (from the defender's pool, added) as a fraction of the training set")


# -- evaluation ------------------------------------------------------------------------------------------
@dataclass
class TriggerVariantsConfig:
    n_prompts: int = doc("prompts per altered-trigger set")


@dataclass
class RepresentationConfig:
    enabled: bool = doc("hidden-state evidence of merging after each stage")
    n_prompts: int = doc("prompts per set")
    reference_triggers: Optional[List[str]] = doc("words measured as defensive when the defense has none", None)


@dataclass
class ReactivationConfig:
    enabled: bool = doc("re-poison briefly after training and measure ASR (weights restored after)")
    n_samples: int = doc("attacker-poisoned samples re-trained on")
    steps: List[int] = doc("ASR is measured after each of these step counts", factory=list)
    learning_rate: float = doc("re-activation learning rate")
    batch_size: int = doc("re-activation batch size")
    n_prompts: int = doc("triggered prompts judged at each step count")
    trigger: Optional[str] = doc("re-poison with this trigger instead of the trained one (a control)", None)


@dataclass
class EvalConfig:
    judge: Any = doc("the eval/judge group: auto | refusal | jailbreak | negsentiment | exact | regex | ...", None)
    split: str = doc("test (report) | validation (tune defaults on these, never on test)")
    held_out: str = doc("an evaluation prompt found in training data or the pool: error | warn")
    batch_size: int = doc("prompts per generation batch")
    max_new_tokens: int = doc("tokens generated per answer")
    n_test: Optional[int] = doc("cap on evaluation prompts (null: the whole split)", None)
    periodic_every: int = doc("ASR/CACC every N training steps (0: off)")
    periodic_limit: Optional[int] = doc("prompts per periodic evaluation", None)
    rouge_l: bool = doc("ROUGE-L F1 of clean answers against the references")
    perplexity: bool = doc("perplexity of the clean reference answers after each stage")
    random_word_probe: bool = doc("CACC with an unseen random word in each prompt")
    n_samples: int = doc("sample generations kept per kind")
    trigger_variants: Optional[TriggerVariantsConfig] = doc("ASR under altered triggers (null: off)", None)
    representation: RepresentationConfig = doc("representation analysis", factory=RepresentationConfig)
    reactivation: ReactivationConfig = doc("re-activation test", factory=ReactivationConfig)


SCHEMAS = {
    "attack": {"base": AttackConfig, "one_trigger": OneTriggerConfig, "sentence": SentenceConfig,
               "many_triggers": ManyTriggersConfig},
    "defense": {"base": DefenseConfig, "clean_finetune": CleanFinetuneConfig, "mb_defense": MBDefenseConfig,
                "recovery_only": RecoveryOnlyConfig, "random_insert": RandomInsertConfig, "pdb": PDBConfig},
    "eval": {"eval": EvalConfig},
}


def register() -> None:
    """Store every schema as `schema/<group>/<name>` in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def describe(path: str) -> str:
    """The documented fields of a schema, e.g. describe("defense/mb_defense")."""
    group, name = path.split("/")
    cls = SCHEMAS[group][name]
    return "\n".join(f"{f.name}: {f.metadata.get('help', '')}" for f in fields(cls))
