"""The base model: a clean training stage before stage 1, trained once per seed and shared.

The paper poisons the instruction tuning of a *pretrained* model. The embedded default has no pretrained
weights, so it first trains on clean suite text (`data.pretrain`, prompts of the training share only) and
caches the result under a key of everything that determines those weights. Every attack and defense of a
seed then starts stage 1 from the same base, and a sweep trains it once per seed instead of once per job.
A model that arrives pretrained (`model=hf`) has `model.pretrain: null` and skips this.

mbdef ships the base of the quickstart's seed (`mbdef/models/bases/<key>`, 4.7 MB, trained here by this very
function): with the same key it is the same inputs, so `make run` on a fresh clone loads it instead of
spending 85 s of its 3-minute budget on pretraining. Any other key (seed, model, data, version) trains.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mbdef.data.records import records_hash
from mbdef.io import cache_key
from mbdef.training.cache import Stage1Cache, load_snapshot
from mbdef.training.sft import train_stage

log = logging.getLogger("mbdef")

SHIPPED_BASES = Path(__file__).resolve().parents[1] / "models" / "bases"


def base_key(records: list[dict], stage_args: dict, identity: dict, **sft_settings) -> str:
    """The cache key of a base: everything that determines its weights."""
    return cache_key(records=records_hash(records), stage=stage_args, **identity, **sft_settings)


@dataclass(frozen=True)
class BaseModel:
    """The clean base model that a job's stage 1 starts from: its pretraining records, its identity (model
    config, mbdef version) and the cache it is shared through (None: trained for this job alone). Its key
    also takes the trainer's pretrain stage (`settings`), so every caller derives it the same way."""

    records: list[dict]
    identity: dict
    cache_dir: str | None

    def key(self, settings) -> str:
        return base_key(self.records, settings.args("pretrain"), self.identity, **settings.shared("pretrain"))

    def load_into(self, model, tokenizer, template, settings, work_dir: str | Path, procs=None) -> dict:
        """`pretrained_base` for this base: load (shipped, cached) or train it into `model`."""
        return pretrained_base(model, tokenizer, template, self.records, settings.args("pretrain"), self.cache_dir,
                               self.identity, work_dir, procs.is_main if procs else True,
                               procs.main_holds if procs else None, **settings.shared("pretrain"))


def pretrained_base(model, tokenizer, template, records: list[dict], stage_args: dict, cache_dir: str | Path | None,
                    identity: dict, work_dir: str | Path, is_main: bool = True, main_holds=None, **sft_settings) -> dict:
    """Load the cached base for `identity` (model config, seed, ...) into `model`, or train and publish it.
    Returns {"key", "steps", "seconds", "cached", "shipped"}; `cached`: loaded rather than trained by this
    call (from the cache, or shipped with mbdef: `shipped`)."""

    key = base_key(records, stage_args, identity, **sft_settings)
    if (snap := load_snapshot(SHIPPED_BASES / key, model)) is not None:
        log.info("base model (clean pretraining) shipped with mbdef: %s", SHIPPED_BASES / key)
        return {"key": key, **snap["train"], "cached": True, "shipped": True}
    cache = Stage1Cache(cache_dir)
    work = Path(work_dir) / "trainer_pretrain"
    if cache.root is None:  # no cache: train it for this job alone
        s = train_stage(model, tokenizer, template, records, stage_args, work, **sft_settings)
        shutil.rmtree(work, ignore_errors=True)
        return {"key": key, "steps": s["steps"], "seconds": s["seconds"], "cached": False, "shipped": False}
    lock = cache.lock(key)
    with (main_holds(lock) if main_holds else lock):
        if (snap := load_snapshot(cache.path(key), model)) is not None:
            log.info("base model (clean pretraining) from the cache %s", cache.path(key))
            return {"key": key, **snap["train"], "cached": True, "shipped": False}
        log.info("training the base model (clean pretraining, %s steps); later jobs of this seed reuse it",
                 stage_args.get("max_steps"))
        s = train_stage(model, tokenizer, template, records, stage_args, work, **sft_settings)
        shutil.rmtree(work, ignore_errors=True)
        record = {"steps": s["steps"], "seconds": s["seconds"], "train_loss": s["train_loss"]}
        if is_main:
            cache.publish(key, model, tokenizer, {"train": record})
        return {"key": key, **record, "cached": False, "shipped": False}
