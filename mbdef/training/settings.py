"""The `trainer` config, read once: each stage's SFT arguments, shared settings and LoRA choice."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mbdef import seeding
from mbdef.schemas.trainer import STAGES
from mbdef.training.sft import lora_config, sft_config, train_stage


@dataclass(frozen=True)
class TrainerSettings:
    config: dict   # the resolved `trainer` node
    seed: int      # the run seed; every stage derives its own from it

    @classmethod
    def from_config(cls, trainer: DictConfig, seed: int) -> "TrainerSettings":
        return cls(OmegaConf.to_container(trainer, resolve=True), int(seed))

    def args(self, stage: str) -> dict:
        """The stage's mapping for trl.SFTConfig (`trainer.<stage>`)."""
        return dict(self.config[stage])

    def shared(self, stage: str) -> dict:
        """Settings every stage takes (training, validation and the cache keys use these); each stage's data
        order and dropout come from its own stream of the run seed."""
        t = self.config
        return {"precision": t["precision"], "seed": seeding.derive_seed(self.seed, f"training/{stage}"),
                "max_length": t["max_length"], "padding_free": t["padding_free"]}

    def lora(self, stage: str) -> dict | None:
        """`trainer.lora` for `stage` (None = full fine-tuning); `trainer.lora_stages` names the stages that
        use it, e.g. [stage2] for LoRA weight recovery on a fully fine-tuned model."""
        lora, stages = self.config.get("lora"), self.config.get("lora_stages") or list(STAGES)
        if unknown := sorted(set(stages) - set(STAGES)):
            raise ValueError(f"trainer.lora_stages: unknown stage(s) {unknown}; known: {list(STAGES)}")
        return dict(lora) if lora and stage in stages else None

    def trainer(self, stage: str, lora_of: str) -> functools.partial:
        """`train_stage` with this run's shared settings for `stage` and the LoRA choice of stage `lora_of`
        (for a training pass outside the two stages, such as the re-activation test)."""
        return functools.partial(train_stage, lora=self.lora(lora_of), **self.shared(stage))

    def validate(self, out_dir: Path, stages: tuple[str, ...]) -> None:
        """Bad trainer keys fail now, before any training."""
        for stage in stages:
            sft_config(self.args(stage), out_dir / f"trainer_{stage}", **self.shared(stage))
        for stage in STAGES:
            if lora := self.lora(stage):
                lora_config(lora)
