"""The `data` group: one schema per loader (`data._target_`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from mbdef.data import BACKDOORLLM_ATTACKS, BACKDOORLLM_TASKS
from mbdef.data.synthetic import TASKS
from mbdef.schemas.checks import doc


@dataclass
class DataConfig:
    _target_: str = doc("the mbdef.data loader this config calls")
    n_defense_pool: int = doc("the defender's clean pool, held out from training", ge=1)
    n_test: int = doc("report prompts", ge=1)
    n_validation: int = doc("tuning prompts (eval.split=validation)", ge=0)
    n_train: Optional[int] = doc("cap on training records (null: all)", None, ge=1)
    seed: int = doc("run seed; each split draws from its own stream", ge=0)
    n_pretrain: int = doc("clean pretraining text (loaders of pretrained models bring none)", optional=True, ge=0)


@dataclass
class SyntheticDataConfig(DataConfig):
    n_train: int = doc("the instruction-tuning set of stage 1", ge=1)
    n_pretrain: int = doc("clean text of the base model (model.pretrain)", ge=0)
    tasks: Optional[List[str]] = doc("task families (null: the six defaults)", None, one_of=tuple(TASKS))
    filler_rate: float = doc("fraction of instructions with one ordinary filler word", ge=0, le=1)
    rare_rate: float = doc("fraction with one out-of-vocabulary word", ge=0, le=1)
    min_words: int = doc("fewest words of a task's input", ge=1)
    max_words: int = doc("most words of a task's input", ge=1)

    @staticmethod
    def relations(v: dict) -> list[str]:
        lo, hi = v.get("min_words"), v.get("max_words")
        return [f"max_words: {hi} is below min_words ({lo})"] if isinstance(lo, int) and isinstance(hi, int) \
            and hi < lo else []


@dataclass
class AlpacaDataConfig(DataConfig):
    train_file: str = doc("Alpaca JSON/JSONL training file")
    test_file: Optional[str] = doc("test prompts (null: carved out of the training file)", None)
    defense_pool_file: Optional[str] = doc("the defender's pool (null: carved out of the training file)", None)


@dataclass
class HFDataConfig(DataConfig):
    path: str = doc("a `datasets` name or builder (json, csv, ...)")
    name: Optional[str] = doc("dataset configuration name", None)
    split: str = doc("the split to read")
    data_files: Any = doc("files for a builder", None)
    columns: Any = doc("{instruction: <col>, input: <col or null>, output: <col>}", None)
    revision: Optional[str] = doc("hub revision", None)


@dataclass
class BackdoorLLMDataConfig(DataConfig):
    root: Optional[str] = doc("a BackdoorLLM data directory (null: the bundled refusal data)", None)
    task: str = doc("BackdoorLLM task", one_of=tuple(BACKDOORLLM_TASKS))
    attack: str = doc("BackdoorLLM attack whose poisoned files are read", one_of=BACKDOORLLM_ATTACKS)
    n_poisoned: Optional[int] = doc("cap on their poisoned rows (null: all; 0: a never-backdoored reference)", None,
                                    ge=0)
