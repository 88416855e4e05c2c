"""The experiment: data -> attack -> defense -> training (two stages) -> eval -> results.json.

`run(cfg)` is pure of Hydra's runtime: tests call it with a composed config. `main` only wraps it.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import transformers
import trl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM

import mbdef
from mbdef.attacks import records_hash
from mbdef.data.text import insert_at
from mbdef.eval import Evaluator, judges
from mbdef.io import redact, write_json_atomic
from mbdef.models import PromptTemplate
from mbdef.training import PeriodicMetrics, Stage1Cache, StageLogger, cache_key, set_threads, sft_config, train_stage

log = logging.getLogger("mbdef")


def build(node, **kw):
    """Instantiate a config node, dropping its display `name`."""
    cfg = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
    try:
        return instantiate(cfg, _convert_="all", **kw)
    except InstantiationException as e:
        # Surface our own validation errors as they are (they name the key), not wrapped by Hydra.
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _stage_args(cfg: DictConfig, stage: str) -> dict:
    return OmegaConf.to_container(cfg.trainer[stage], resolve=True)


def _sft_settings(cfg: DictConfig) -> dict:
    """Trainer settings shared by both stages (validation, training and the stage-1 cache key all use these)."""
    t = cfg.trainer
    return {"precision": t.precision, "seed": cfg.seed, "max_length": t.max_length, "padding_free": t.padding_free}


def run(cfg: DictConfig) -> dict:
    t0 = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    set_threads(cfg.trainer.get("threads"))

    # Everything cheap first, so bad config or data fails before any training.
    splits = build(cfg.data)
    attack = build(cfg.attack)
    defense = build(cfg.defense)
    poisoned = attack.poison(splits.train)
    plan = defense.plan(poisoned.records, splits.defense_pool)
    judge = judges.resolve(cfg.eval.judge, attack.target)
    test = splits.test[: cfg.eval.n_test] if cfg.eval.get("n_test") else splits.test
    if not test:
        raise ValueError("eval: the test set is empty (check data and eval.n_test)")
    for stage in ("stage1", "stage2") if plan.stage2 else ("stage1",):  # bad trainer keys fail now, not mid-run
        sft_config(_stage_args(cfg, stage), out_dir / f"trainer_{stage}", **_sft_settings(cfg))
    model, tokenizer = build(cfg.model.build)
    template = PromptTemplate(tokenizer, **OmegaConf.to_container(cfg.model.template, resolve=True))
    probes = {}
    if plan.info.get("defensive_triggers"):  # does each defensive trigger (as a prefix) still fire its behaviour?
        for i, (trig, beh) in enumerate(zip(plan.info["defensive_triggers"], plan.info["defensive_behaviours"])):
            recs = [{**r, "instruction": insert_at(r["instruction"], trig, "start", None)} for r in test]
            probes[f"defense_trigger_{i}"] = (recs, beh)
    evaluator = Evaluator(template, test, attack.trigger_test(test, seed=cfg.seed) if attack.active else None, judge,
                          batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens, probes=probes,
                          n_samples=cfg.eval.n_samples)
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.save(OmegaConf.create(resolved), out_dir / "resolved_config.yaml")

    attack_name, defense_name = cfg.attack.name, cfg.defense.name
    tracker = build(cfg.logger) if cfg.get("logger") else None
    if tracker is not None:
        tracker.start(resolved, name=f"{attack_name}-{defense_name}-s{cfg.seed}", job_type=defense_name,
                      tags=[f"attack:{attack_name}", f"defense:{defense_name}", f"model:{cfg.model.name}",
                            f"data:{splits.name}"])
    log_fn = tracker.log if tracker is not None else (lambda m, s: None)
    try:
        results = _train_and_evaluate(cfg, out_dir, model, tokenizer, template, plan, evaluator, log_fn, tracker)
    except BaseException:
        log.exception("run failed; see %s", out_dir)
        if tracker is not None:
            tracker.finish(exit_code=1)
        raise

    results.update(
        attack=attack_name, defense=defense_name, model=cfg.model.name, data=splits.name, seed=cfg.seed,
        poison={"rate": attack.poison_rate, "n_poisoned": poisoned.n_poisoned, "n_train": len(poisoned.records),
                "poisoned_data_hash": records_hash(poisoned.records), **attack.describe()},
        judge=judge.name, defense_info=plan.info, template=template.describe(),
        labels={"poisoned_training_data": poisoned.n_poisoned > 0 or bool(plan.info.get("defensive_triggers")),
                "may_contain_backdoor": poisoned.n_poisoned > 0},
        n_params=sum(p.numel() for p in model.parameters()),
        versions={"mbdef": mbdef.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                  "trl": trl.__version__, "python": platform.python_version()},
        device=str(next(model.parameters()).device), output_dir=str(out_dir),
    )
    results["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(results, out_dir / "results.json")
    if tracker is not None:
        tracker.summary({k: results[k] for k in ("asr", "cacc", "false_trigger_rate", "triggered_cacc") if k in results})
        tracker.finish(exit_code=0)
    log.info("%s / %s: ASR %s  CACC %.3f  -> %s", attack_name, defense_name, results["asr"], results["cacc"],
             out_dir / "results.json")
    return results


def _train_and_evaluate(cfg, out_dir, model, tokenizer, template, plan, evaluator, log_fn, tracker) -> dict:
    tcfg, timings = cfg.trainer, {}
    periodic = lambda m: {k: v for k, v in evaluator.evaluate(m, tokenizer, limit=cfg.eval.periodic_limit).items()
                          if isinstance(v, (int, float)) and not k.startswith("n_")}

    def stage(name: str, records: list[dict], offset: int):
        cbs = [StageLogger(name, log_fn, offset)]
        if cfg.eval.periodic_every:
            cbs.append(PeriodicMetrics(name, periodic, log_fn, cfg.eval.periodic_every, offset))
        return train_stage(model, tokenizer, template, records, _stage_args(cfg, name), out_dir / f"trainer_{name}",
                           callbacks=cbs, **_sft_settings(cfg))

    # Stage 1, shared through the cache by every job with the same stage-1 inputs.
    key = cache_key(records=records_hash(plan.stage1), model=OmegaConf.to_container(cfg.model, resolve=True),
                    stage1=_stage_args(cfg, "stage1"), version=mbdef.__version__, **_sft_settings(cfg))
    cache = Stage1Cache(cfg.paths.cache_dir if tcfg.cache_stage1 else None)
    lock = cache.lock(key)
    if lock is not None:
        lock.acquire()
    try:
        hit = cache.hit(key)
        if hit is not None:
            cached = json.loads((hit / "stage1.json").read_text())
            model.load_state_dict(AutoModelForCausalLM.from_pretrained(hit, dtype=model.dtype).state_dict())
            s1, after1 = cached["train"], cached["metrics"]
            for row in s1.get("log_history", []):  # replay stage-1 curves into this job's W&B run
                log_fn({f"stage1/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"},
                       row.get("step", 0))
            s1["cached_from"] = str(hit)
            log.info("stage 1 reused from cache %s", hit)
        else:
            s1 = stage("stage1", plan.stage1, 0)
            t = time.perf_counter()
            after1 = evaluator.evaluate(model, tokenizer, samples=True, progress=True)
            after1["eval_s"] = round(time.perf_counter() - t, 2)
            if cache.root:
                cache.publish(key, model, tokenizer, {"train": s1, "metrics": after1})
    finally:
        if lock is not None:
            lock.release()
    timings["stage1_s"] = 0.0 if "cached_from" in s1 else s1["seconds"]
    timings["eval_s"] = after1.pop("eval_s", 0.0)
    results = {"stage1": {k: v for k, v in s1.items() if k != "log_history"},
               "after_stage1": {k: v for k, v in after1.items() if k != "samples"}}
    step = s1["steps"]

    final = dict(after1)
    if plan.stage2:
        s2 = stage("stage2", plan.stage2, step)
        timings["stage2_s"] = s2["seconds"]
        results["stage2"] = {k: v for k, v in s2.items() if k != "log_history"}
        step += s2["steps"]
        t = time.perf_counter()
        final = evaluator.evaluate(model, tokenizer, samples=True, progress=True)
        timings["eval_s"] += round(time.perf_counter() - t, 2)
    samples = final.pop("samples", [])
    if tracker is not None:
        tracker.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float))}, step)
        tracker.table("final/samples", samples, step)
    if cfg.save_model:
        model.save_pretrained(out_dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out_dir / "model")
    return {**results, **final, "samples": samples, "timings": timings, "steps": step}


@hydra.main(version_base="1.3", config_path=str(mbdef.CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    results = run(cfg)
    return results.get("asr")


if __name__ == "__main__":
    main()
