"""The keys at the top of the config, and the `logger` group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional

from mbdef.schemas.eval import EvalConfig
from mbdef.schemas.checks import doc
from mbdef.schemas.model import ModelConfig
from mbdef.schemas.trainer import TrainerConfig

PROGRESS = ("auto", "bars", "lines")
WANDB_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class RunConfig:
    OPEN: ClassVar[bool] = True  # a user may add keys of their own (+key=value)

    seed: int = doc("the run seed; every source of randomness derives its own stream from it", ge=0)
    save_model: bool = doc("keep the trained model in the run dir (safetensors)")
    force: bool = doc("redo a finished job (its old files move to superseded/)")
    sweep_id: str = doc("names the multirun dir: outputs/multirun/<sweep_id>/")
    progress: str = doc("auto: labelled lines when jobs run side by side, bars otherwise", one_of=PROGRESS)
    name: str = doc("display name of a job")
    data: Any = doc("the data group (schema by its _target_)")
    model: ModelConfig = doc("the model group")
    attack: Any = doc("the attack group (schema named in its defaults list)")
    defense: Any = doc("the defense group (schema named in its defaults list)")
    trainer: TrainerConfig = doc("the trainer group")
    eval: EvalConfig = doc("the eval group")
    logger: Any = doc("the logger group (schema by its _target_; none: no keys)")
    paths: Any = doc("where runs, caches and logs go")


@dataclass
class WandbConfig:
    _target_: str = doc("mbdef.tracking.WandbTracker")
    project: str = doc("W&B project")
    entity: Optional[str] = doc("W&B entity (null: your default)", None)
    mode: str = doc("auto: online with a W&B key, offline otherwise", one_of=WANDB_MODES)
    dir: Optional[str] = doc("where the run's files go", None)
    group: Optional[str] = doc("W&B group (a sweep's jobs share their sweep_id)", None)
    tags: List[str] = doc("W&B tags of every run", factory=list)
