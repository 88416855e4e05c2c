"""The two training stages of a job, each followed by a full evaluation, with everything that makes them
resumable and shared: the clean base model (pretraining, cached per seed), this job's own stage snapshots
(a killed job resumes after its last finished stage), and the stage-1 cache (jobs whose stage-1 data
and settings are identical, e.g. `none` and `finetune`, train it once).

Training knows nothing of attacks or judges: it calls the `evaluator` it is given (`evaluate(model,
tokenizer, full=, progress=, limit=)` -> metrics dict).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mbdef import __version__
from mbdef.data.records import records_hash
from mbdef.defenses.base import TrainingPlan
from mbdef.io import cache_key
from mbdef.training.cache import Stage1Cache, load_snapshot, save_snapshot
from mbdef.training.callbacks import PeriodicMetrics, StageLogger
from mbdef.training.pretrain import BaseModel
from mbdef.training.settings import TrainerSettings
from mbdef.training.sft import train_stage

log = logging.getLogger("mbdef")


@dataclass
class StageJob:
    """What the stages of one job need besides the model: where to write, how to share, what to log."""

    out_dir: Path
    settings: TrainerSettings
    stage1_key: str                  # cache key of the stage-1 weights
    eval_key: str                    # how this job evaluates (stored with a snapshot's metrics)
    cache_dir: str | None            # the stage-1 cache (None = off)
    base: BaseModel | None = None    # the clean base model stage 1 starts from; None = none
    periodic_every: int = 0
    periodic_limit: int | None = None
    log: object = field(default=lambda metrics, step: None)
    procs: object = None             # mbdef.training.distributed.Processes
    progress_label: str | None = None  # labelled log lines instead of progress bars (jobs side by side)

    @classmethod
    def from_config(cls, cfg: DictConfig, out_dir: Path, settings: TrainerSettings, procs, log, stage1: list[dict],
                    eval_fingerprint: str, pretrain: list[dict] | None, progress_label: str | None) -> "StageJob":
        """The job from the run's config: its cache keys (what determines the stage-1 weights, how it
        evaluates), the caches it may share and the clean pretraining of the base model, if any."""
        model = OmegaConf.to_container(cfg.model, resolve=True)
        shared = settings.config["cache_stage1"]
        return cls(out_dir=out_dir, settings=settings, procs=procs, log=log, progress_label=progress_label,
                   stage1_key=stage1_key(records_hash(stage1), model, settings, __version__),
                   eval_key=cache_key(eval=OmegaConf.to_container(cfg.eval, resolve=True), sets=eval_fingerprint),
                   cache_dir=cfg.paths.cache_dir if shared else None,
                   base=BaseModel(pretrain, {"model": model, "version": __version__},
                                  cfg.paths.base_cache_dir if shared else None)
                   if cfg.model.pretrain and pretrain else None,
                   periodic_every=cfg.eval.periodic_every, periodic_limit=cfg.eval.periodic_limit)


def run_stages(model, tokenizer, template, plan: TrainingPlan, evaluator, job: StageJob, defended=None) -> dict:
    """Train stage 1 (or restore it), evaluate, apply the plan's weight transform (if any), train stage 2 (if
    any, with the plan's extra training loss), evaluate (through `defended`, the evaluator behind an
    inference-time defense, if any); returns the results part {stage1, after_stage1, weight_transform?,
    stage2?, <final metrics>, samples, timings, steps}."""
    stage1, stage2 = plan.stage1, plan.stage2
    procs, out_dir, settings, timings = job.procs, job.out_dir, job.settings, {}
    bars = job.progress_label is None

    def periodic(m):
        return {k: v for k, v in evaluator.evaluate(m, tokenizer, limit=job.periodic_limit).items()
                if isinstance(v, (int, float)) and not k.startswith("n_")}

    def stage(name: str, records: list[dict], offset: int) -> dict:
        cbs = [StageLogger(name, job.log, offset)]
        if job.periodic_every:
            cbs.append(PeriodicMetrics(name, periodic, job.log, job.periodic_every, offset))
        return train_stage(model, tokenizer, template, records, settings.args(name), out_dir / f"trainer_{name}",
                           callbacks=cbs, checkpoint_every=settings.config.get("checkpoint_every"),
                           lora=settings.lora(name), adapter_dir=out_dir / "adapters" / name if procs.is_main else None,
                           progress_label=job.progress_label, extra_loss=plan.training_loss if name == "stage2" else None,
                           **settings.shared(name))

    def evaluate(through=evaluator) -> dict:
        t = time.perf_counter()
        metrics = through.evaluate(model, tokenizer, full=True, progress=bars)
        metrics["eval_s"] = round(time.perf_counter() - t, 2)
        return metrics

    def snapshot(folder: Path, record: dict) -> None:  # the main process writes; the others wait for it
        if procs.is_main:
            save_snapshot(folder, model, tokenizer, record)
        procs.barrier()

    def replay(s1: dict) -> None:  # stage-1 curves into this job's W&B run when stage 1 was not trained here
        for row in s1.get("log_history", []):
            job.log({f"stage1/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"},
                    row.get("step", 0))

    def restore_stage1(folder: Path, how: str) -> tuple[dict, dict] | None:
        """Stage 1 from a snapshot (`how`: restored_from = this job's, cached_from = the shared cache)."""
        if (snap := load_snapshot(folder, model)) is None:
            return None
        s1, after1 = snap["train"], snap["metrics"]
        s1[how] = str(folder)
        replay(s1)
        log.info("stage 1 %s %s", how.replace("_", " "), folder)
        if snap.get("eval_key") != job.eval_key:  # same weights, different test sets or eval settings: measure anew
            after1 = evaluate()
            log.info("stage-1 metrics re-measured: this job evaluates differently from the one that trained it")
        return s1, after1

    base = {}

    def train_stage1() -> tuple[dict, dict]:
        if job.base is not None:  # the clean base model: only needed when stage 1 trains here
            base.update(job.base.load_into(model, tokenizer, template, settings, out_dir, procs))
        return stage("stage1", stage1, 0), evaluate()

    # Stage 1: this job's own finished stage 1 (a resumed job), else the shared cache, else train it.
    local1, cache = out_dir / "stage1_model", Stage1Cache(job.cache_dir)
    if (restored := restore_stage1(local1, "restored_from")) is not None:
        s1, after1 = restored
    elif cache.root is None:
        s1, after1 = train_stage1()
        snapshot(local1, {"train": s1, "metrics": after1, "eval_key": job.eval_key})
    else:
        with procs.main_holds(cache.lock(job.stage1_key)):
            if (restored := restore_stage1(cache.path(job.stage1_key), "cached_from")) is not None:
                s1, after1 = restored
            else:
                s1, after1 = train_stage1()
                if procs.is_main:
                    cache.publish(job.stage1_key, model, tokenizer,
                                  {"train": s1, "metrics": after1, "eval_key": job.eval_key})
    trained_here = "cached_from" not in s1 and "restored_from" not in s1
    eval1_s = after1.pop("eval_s", 0.0)
    timings["stage1_s"] = s1["seconds"] if trained_here else 0.0
    timings["pretrain_s"] = base.get("seconds", 0.0) if base and not base["cached"] else 0.0
    if base:
        s1["base"] = {k: base[k] for k in ("key", "steps", "cached", "shipped")}
    timings["eval_s"] = eval1_s if trained_here else 0.0
    results = {"stage1": {k: v for k, v in s1.items() if k != "log_history"},
               "after_stage1": {k: v for k, v in after1.items() if k != "samples"}}
    step = s1["steps"]

    final = dict(after1)
    if plan.weight_transform is not None:  # on the stage-1 weights (the cache keeps them untransformed)
        t = time.perf_counter()
        results["weight_transform"] = plan.weight_transform(
            model, [template.encode_example(r)[0] for r in plan.calibration])
        timings["transform_s"] = round(time.perf_counter() - t, 2)
    if stage2:
        local2 = out_dir / "stage2_model"
        if (snap := load_snapshot(local2, model)) is not None:
            s2 = {**snap["train"], "restored_from": str(local2)}
        else:
            s2 = stage("stage2", stage2, step)
            snapshot(local2, {"train": s2})
        timings["stage2_s"] = 0.0 if "restored_from" in s2 else s2["seconds"]
        results["stage2"] = {k: v for k, v in s2.items() if k != "log_history"}
        step += s2["steps"]
    if stage2 or plan.weight_transform is not None or defended is not None:
        final = evaluate(defended or evaluator)
        timings["eval_s"] += final.pop("eval_s")
    samples = final.pop("samples", [])
    representation = {k: m.pop("representation") for k, m in (("after_stage1", after1), ("final", final))
                      if "representation" in m}
    results["after_stage1"].pop("representation", None)
    if representation:
        results["representation"] = representation
    return {**results, **final, "samples": samples, "timings": timings, "steps": step}


def stage1_key(records_hash: str, model_config: dict, settings: TrainerSettings, version: str) -> str:
    """What determines the stage-1 weights (and so what a cached stage 1 may be shared on)."""
    return cache_key(records=records_hash, model=model_config, stage1=settings.args("stage1"), version=version,
                     lora=settings.lora("stage1"), **settings.shared("stage1"))


def keep_final_model(model, tokenizer, out_dir: Path, procs, save: bool) -> None:
    """The final model in model/ (safetensors) when asked; the stage snapshots, only needed to resume, go."""
    procs.barrier()  # what follows (the re-activation test) trains on every process again
    if not procs.is_main:
        return
    if save:
        model.save_pretrained(out_dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "model")
    for folder in (out_dir / "stage1_model", out_dir / "stage2_model"):
        shutil.rmtree(folder, ignore_errors=True)
