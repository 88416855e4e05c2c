"""The `eval` group and its `eval/judge` subgroup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from mbdef.schemas.checks import doc

SPLITS = ("test", "validation")
HELD_OUT = ("error", "warn")
EXACT_MATCH = ("equals", "contains", "startswith")


@dataclass
class TriggerVariantsConfig:
    n_prompts: int = doc("prompts per altered-trigger set", 128, ge=1)


@dataclass
class RepresentationConfig:
    enabled: bool = doc("hidden-state evidence of merging after each stage (mbdef/eval/representation.py)", True)
    n_prompts: int = doc("prompts per set", 128, ge=2)
    reference_triggers: Optional[List[str]] = doc("words measured as defensive when the defense has none of its own "
                                                  "(null: the trigger is compared with a random word only)", None)


@dataclass
class ReactivationConfig:
    enabled: bool = doc("suppressed or masked: re-poison briefly after training and measure ASR (weights "
                        "restored after)", True)
    n_samples: int = doc("attacker-poisoned samples re-trained on", 32, ge=1)
    steps: List[int] = doc("ASR is measured after each of these step counts", factory=lambda: [5, 10, 20, 40], ge=1)
    learning_rate: float = doc("re-activation learning rate; at 1e-3 a never-backdoored model does not learn the "
                               "refusal from 32 samples in 40 steps, it degrades instead (docs/results.md "
                               "section 4)", 1.0e-3, gt=0)
    batch_size: int = doc("re-activation batch size", 8, ge=1)
    n_prompts: int = doc("triggered prompts judged at each step count", 96, ge=1)
    trigger: Optional[str] = doc("re-poison (and measure ASR) with this trigger instead of the trained one: the "
                                 "control of a model that learned the same target under another trigger", None)


@dataclass
class EvalConfig:
    judge: Any = doc("the eval/judge group: auto | refusal | jailbreak | negsentiment | exact | regex | ...", None)
    split: str = doc("test (report) | validation (tune defaults on these, never on test)", "test", one_of=SPLITS)
    held_out: str = doc("an evaluation prompt found in training data or the pool", "error", one_of=HELD_OUT)
    batch_size: int = doc("prompts per generation batch", 128, ge=1)
    max_new_tokens: int = doc("tokens generated per answer", 32, ge=1)
    n_test: Optional[int] = doc("cap on evaluation prompts (null: the whole split)", None, ge=1)
    periodic_every: int = doc("ASR/CACC every N training steps (0: off)", 300, ge=0)
    periodic_limit: Optional[int] = doc("prompts per periodic evaluation (each of clean, triggered, probes)", 48, ge=1)
    rouge_l: bool = doc("ROUGE-L F1 of clean answers against the references (free-form data, where exact match is "
                        "too strict)", True)
    perplexity: bool = doc("perplexity of the clean reference answers (teacher-forced, response tokens) after each "
                           "stage", True)
    random_word_probe: bool = doc("cacc_random_word: CACC with an unseen random word in each prompt", True)
    n_samples: int = doc("sample generations kept per kind in results and W&B", 8, ge=0)
    trigger_variants: Optional[TriggerVariantsConfig] = doc("ASR under altered triggers: case, a space inside, first "
                                                            "half, other positions, subsets (null: off)",
                                                            factory=TriggerVariantsConfig)
    representation: RepresentationConfig = doc("representation analysis", factory=RepresentationConfig)
    reactivation: ReactivationConfig = doc("re-activation test", factory=ReactivationConfig)


# -- eval/judge ------------------------------------------------------------------------------------------
@dataclass
class JudgeConfig:
    name: str = doc("the judge's name in results.json")
    _target_: str = doc("the mbdef.eval.judges class or function this config builds", optional=True)


@dataclass
class ClassifierJudgeConfig(JudgeConfig):
    model: str = doc("text-classification model, hub name or local path")
    positive_labels: List[str] = doc("labels that count as the target behaviour")
    threshold: float = doc("score at or above which a positive label counts", ge=0, le=1)
    batch_size: int = doc("outputs per classifier batch", ge=1)
    device: Optional[str] = doc("torch device (null: the pipeline's default)", None)
    trust_remote_code: bool = doc("run code from the model repository (off unless asked)")


@dataclass
class ExactJudgeConfig(JudgeConfig):
    text: str = doc("the target text")
    match: str = doc("how the output is compared with the text", one_of=EXACT_MATCH)


@dataclass
class RegexJudgeConfig(JudgeConfig):
    pattern: str = doc("a Python regular expression; a match is the target behaviour")
    flags: str = doc("regex flags as letters, e.g. 'i' (case-insensitive)")


@dataclass
class LLMJudgeConfig(JudgeConfig):
    base_url: str = doc("an OpenAI-compatible endpoint")
    model: str = doc("the judge model's name at that endpoint")
    behaviour: str = doc("the target behaviour, in words, that the judge looks for")
    api_key_env: Optional[str] = doc("name of the environment variable holding the API key", None)
    timeout: float = doc("seconds per request", gt=0)
