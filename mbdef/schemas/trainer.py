"""The `trainer` group. Each stage's mapping goes to trl.SFTConfig as it is, so a stage is open: the keys
typed here are the ones every stage sets and mbdef reads; any other SFTConfig field passes through and is
checked by SFTConfig itself before training (`TrainerSettings.validate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, List, Optional

from mbdef.schemas.checks import doc

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STAGES = ("stage1", "stage2")
LORA_BIAS = ("none", "all", "lora_only")


@dataclass
class StageConfig:
    OPEN: ClassVar[bool] = True  # trl.SFTConfig fields pass through

    max_steps: int = doc("optimizer steps of this stage (-1: num_train_epochs passes over its rows instead)", ge=-1)
    num_train_epochs: float = doc("passes over the stage's rows, read only when max_steps is -1", optional=True, gt=0)
    per_device_train_batch_size: int = doc("samples per step and device", ge=1)
    learning_rate: float = doc("peak learning rate", gt=0)
    lr_scheduler_type: str = doc("transformers scheduler name (constant, cosine, warmup_stable_decay, ...)")
    warmup_steps: int = doc("linear warm-up steps", ge=0)
    logging_steps: int = doc("steps between logged losses", ge=1)
    weight_decay: float = doc("AdamW weight decay", optional=True, ge=0)
    gradient_accumulation_steps: int = doc("micro-batches per optimizer step", optional=True, ge=1)


@dataclass
class LoraConfig:
    r: int = doc("adapter rank", ge=1)
    alpha: float = doc("LoRA scaling numerator (scale = alpha / r)", gt=0)
    dropout: float = doc("dropout on the adapter input", ge=0, lt=1)
    target_modules: Optional[List[str]] = doc("module names to adapt (null: every linear layer but the head)", None)
    bias: str = doc("which biases train", optional=True, one_of=LORA_BIAS)


@dataclass
class TrainerConfig:
    precision: str = doc("bf16 on a CUDA GPU, fp32 on CPU (auto), or forced", one_of=PRECISIONS)
    max_length: int = doc("truncation length in tokens (not applied to padding-free batches)", ge=1)
    padding_free: bool = doc("one flattened sequence per batch, boundaries in position_ids")
    threads: Optional[int] = doc("torch CPU threads (null: torch's default)", None, ge=1)
    lora: Optional[LoraConfig] = doc("null: full fine-tuning; trainer=lora: adapters", None)
    lora_stages: List[str] = doc("the stages trained through `lora` when it is set", factory=list, one_of=STAGES)
    cache_stage1: bool = doc("reuse a trained stage 1 across jobs with identical stage-1 inputs")
    checkpoint_every: Optional[int] = doc("steps between resumable checkpoints (null: none mid-stage)", None, ge=1)
    pretrain: StageConfig = doc("the clean base model's training (models with model.pretrain=true)")
    stage1: StageConfig = doc("instruction tuning on the (poisoned) training set")
    stage2: StageConfig = doc("weight recovery / clean fine-tuning, the same budget for every defense")
