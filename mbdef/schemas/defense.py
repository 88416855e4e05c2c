"""The `defense` group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import II

from mbdef.data.text import POSITIONS
from mbdef.schemas.checks import doc

TRIGGER_KINDS = ("rare_word", "phrase", "mixed")
BEHAVIOUR_MODES = ("distinct", "shared")
STAGE2_INSERTS = ("defensive", "random")
PRUNE_METHODS = ("magnitude", "wanda", "sparsegpt")
QUANT_BITS = (4, 8)


@dataclass
class DefenseConfig:
    name: str = doc("the defense's name in reports and run directories")
    _target_: str = doc("the mbdef.defenses class this config builds")
    seed: int = doc("run seed; the defense's own streams (triggers, choice, recovery set) derive from it",
                    II("seed"), ge=0)


@dataclass
class CleanFinetuneConfig(DefenseConfig):
    name: str = doc("the defense's name in reports and run directories", "finetune")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.CleanFinetune")
    clean_size: int = doc("clean samples from the defender's pool for stage 2 (the weight-recovery set)", 128, ge=1)


@dataclass
class MBDefenseConfig(CleanFinetuneConfig):
    """T, the rate and clean_size were chosen on the tuning seeds and validation prompts by a rule fixed in
    advance (docs/results.md section 2: all three kept; a floor effect for T and the rate)."""
    name: str = doc("the defense's name in reports and run directories", "mb_defense")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.MBDefense")
    n_triggers: int = doc("T: the number of defensive triggers", 1, ge=1)
    trigger_kind: str = doc("generated defensive triggers (the defender never knows the attacker's)", "rare_word",
                            one_of=TRIGGER_KINDS)
    triggers: Optional[List[str]] = doc("explicit defensive triggers instead of generated ones", None)
    behaviours: Any = doc("defensive behaviours: a mode, or a list of strings, one per trigger", "distinct",
                          one_of=BEHAVIOUR_MODES, or_list=True)
    rate_per_trigger: float = doc("defensive samples per trigger, as a fraction of the training set (added)", 0.04,
                                  gt=0, le=1)
    position: str = doc("where a defensive trigger goes in a sample", "random_word", one_of=POSITIONS)
    stage2_trigger_fraction: float = doc("fraction of the recovery set carrying a defensive trigger, with its clean "
                                         "response (1.0: the paper)", 1.0, ge=0, le=1)


@dataclass
class RecoveryOnlyConfig(MBDefenseConfig):
    defensive_poisoning: bool = doc("stage 1 with defensive poisoning (false: the attacker's data only)", True)


@dataclass
class RandomInsertConfig(RecoveryOnlyConfig):
    stage2_insert: str = doc("what stage 2 inserts: defensive (MB-Defense) | random (a fresh random trigger of "
                             "trigger_kind per row)",
                             "defensive", one_of=STAGE2_INSERTS)


@dataclass
class OracleUnlearnConfig(CleanFinetuneConfig):
    name: str = doc("the defense's name in reports and run directories", "oracle_unlearn")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.OracleUnlearn")
    trigger_fraction: float = doc("fraction of the recovery rows carrying the attacker's own trigger (1.0: every "
                                  "row, as MB-Defense's stage2_trigger_fraction)", 1.0, ge=0, le=1)


@dataclass
class PDBConfig(DefenseConfig):
    name: str = doc("the defense's name in reports and run directories", "pdb")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.PDB")
    trigger: Optional[str] = doc("the proactive defensive trigger; null: a generated rare word", None)
    rate: float = doc("defensive samples (from the defender's pool, added) as a fraction of the training set", 0.1,
                      gt=0, le=1)


@dataclass
class PruneConfig(CleanFinetuneConfig):
    """Pruning of the stage-1 model (mbdef/defenses/weights.py), as BackdoorLLM's DefenseBox runs it."""
    name: str = doc("the defense's name in reports and run directories", "prune_magnitude")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.Prune")
    method: str = doc("magnitude: smallest |w| per layer | wanda: smallest |w| x input norm per output row | "
                      "sparsegpt: the Hessian-chosen mask and weight update, block by block",
                      "magnitude", one_of=PRUNE_METHODS)
    sparsity: float = doc("fraction of each decoder linear layer's weights set to zero", 0.5, ge=0, lt=1)
    finetune: bool = doc("then the clean fine-tune of stage 2 (the trainer.stage2 budget on clean_size rows)", False)
    calibration_size: int = doc("clean pool rows whose activations calibrate Wanda and SparseGPT (magnitude: none)", 128,
                                ge=1)


@dataclass
class QuantizeConfig(DefenseConfig):
    """Round-to-nearest weight quantization of the stage-1 model (mbdef/defenses/weights.py)."""
    name: str = doc("the defense's name in reports and run directories", "quant8")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.Quantize")
    bits: int = doc("bits per weight: 2^bits levels per group", 8, one_of=QUANT_BITS)
    group_size: int = doc("consecutive inputs of an output row sharing one scale and offset", 32, ge=1)


@dataclass
class CrowConfig(CleanFinetuneConfig):
    """CROW: the clean fine-tune of stage 2 with a layer-consistency term (mbdef/defenses/crow.py)."""
    name: str = doc("the defense's name in reports and run directories", "crow")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.Crow")
    alpha: float = doc("weight of the consistency term beside the language-model loss; 1 by the tuning rule on the "
                       "embedded default's tuning seeds (docs/results.md 5b; paper: 5.5, 11 for refusal)", 1.0, ge=0)
    epsilon: float = doc("size of the signed-gradient step on the input embeddings (paper: 0.1)", 0.1, ge=0)


@dataclass
class ReferenceConfig(DefenseConfig):
    reference: Optional[str] = doc("the reference LM: null = the run's clean model before stage 1 (the weights a "
                                   "pretrained model arrives with; the embedded default's clean base), or a "
                                   "local HF model directory", None)


@dataclass
class OnionConfig(ReferenceConfig):
    """ONION: remove the words whose removal lowers the reference LM's perplexity most (mbdef/defenses/onion.py)."""
    name: str = doc("the defense's name in reports and run directories", "onion")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.Onion")
    threshold: Optional[float] = doc("remove a word when its removal lowers the mean NLL per token by more than "
                                     "this; null: calibrate on the defender's clean pool (clean_flag_rate). A drop in mean NLL per "
                                     "token lies within ±log(vocabulary size), so ±20 covers any tokenizer", None,
                                     ge=-20, le=20)
    clean_flag_rate: float = doc("calibration: share of the defender's clean prompts allowed to lose a word", 0.05,
                                 gt=0, lt=1)
    calibration_size: int = doc("clean pool prompts the threshold is calibrated on", 128, ge=1)


@dataclass
class CleanGenConfig(ReferenceConfig):
    """CleanGen: replace a generated token the suspect model likes far more than the reference does
    (mbdef/defenses/decoding.py)."""
    name: str = doc("the defense's name in reports and run directories", "cleangen")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.CleanGen")
    alpha: float = doc("replace a token when p_suspect / p_reference exceeds this (paper: 20)", 20.0, ge=1)


@dataclass
class DecodingConfig(DefenseConfig):
    """Temperature / top-p sampling in place of greedy decoding (mbdef/defenses/decoding.py)."""
    name: str = doc("the defense's name in reports and run directories", "decoding")
    _target_: str = doc("the mbdef.defenses class this config builds", "mbdef.defenses.Decoding")
    temperature: float = doc("sampling temperature", 1.0, gt=0)
    top_p: float = doc("nucleus: sample from the smallest set of tokens holding this probability", 0.9, gt=0, le=1)
