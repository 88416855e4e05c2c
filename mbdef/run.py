"""The experiment: data -> attack -> defense -> training (two stages) -> eval -> results.json.

`run(cfg)` reads as that pipeline and is pure of Hydra's runtime: tests call it with a composed config.
`mbdef.cli` only wraps it. Each step lives in its package; this module only wires them and writes the run dir.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path

import torch
import transformers
import trl
from omegaconf import DictConfig, OmegaConf

import mbdef
from mbdef import seeding
from mbdef.attacks import Poisoned, attack_of_data
from mbdef.data.records import records_hash
from mbdef.defenses import MBDefense
from mbdef.eval import judges
from mbdef.eval.audit import check_held_out, piece_word_audit, trigger_collisions
from mbdef.eval.prompt_sets import build_evaluator, eval_prompts
from mbdef.eval.reactivation import reactivation_rows, reactivation_test
from mbdef.io import build, redact, write_json_atomic
from mbdef.models import PromptTemplate
from mbdef.report.card import write_model_card
from mbdef.results import RunResults
from mbdef.rundir import RunDir, config_hash
from mbdef.schemas import validate
from mbdef.tracking import NullTracker, log_final
from mbdef.training import cache_key, configure_progress, set_threads
from mbdef.training.distributed import Processes
from mbdef.training.settings import TrainerSettings
from mbdef.training.sft import in_multirun, progress_mode
from mbdef.training.stage_data import stage_rows, write_stage_data
from mbdef.training.stages import StageJob, finish_stage_dirs, run_stages, stage1_key

log = logging.getLogger("mbdef")
FINAL_KEYS = ("asr", "cacc", "false_trigger_rate", "triggered_cacc", "rouge_l", "perplexity")


def _prepare_output_dir(cfg: DictConfig) -> Path:
    out_dir = Path(cfg.paths.output_dir).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"paths.output_dir: cannot write to {out_dir} ({e.strerror}); choose a writable "
                         f"directory, e.g. paths.log_dir=/tmp/mbdef") from None
    return out_dir


def run(cfg: DictConfig) -> dict:
    """One job. A finished job of the same config returns its saved results; an unfinished one resumes."""
    t0 = time.perf_counter()
    validate(cfg)  # every declared key's type and range, before any file, data or model is touched
    out_dir = _prepare_output_dir(cfg)
    resolved = redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))  # ??? is reported below
    rundir = RunDir(out_dir, config_hash(resolved))
    if not cfg.force and (done := rundir.completed_results()) is not None:
        log.info("already complete, skipped (force=true redoes it): %s", out_dir / "results.json")
        return done
    if (changed := rundir.finished_with_other_config(resolved)) is not None:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        log.info("%s holds a finished run of another config (changed: %s): re-running; its files move to "
                 "superseded/", out_dir, shown or "mbdef's config hashing")
    seed, force = cfg.seed, cfg.force
    seeding.seed_libraries(seed)
    set_threads(cfg.trainer.threads)
    configure_progress(progress_mode(cfg.progress), f"{cfg.attack.name}/{cfg.defense.name} s{seed}")
    procs = Processes()  # torchrun / accelerate launch: all processes train, only the main one writes

    # 1. Data, attack, defense plan: everything cheap first, so bad config or data fails before training.
    splits, attack, defense = build(cfg.data), build(cfg.attack), build(cfg.defense)
    if splits.poisoned_indices and attack.active:
        raise ValueError(f"attack={cfg.attack.name}: data '{splits.name}' is already poisoned; use attack=none")
    poisoned = (Poisoned(list(splits.train), splits.poisoned_indices) if splits.poisoned_indices
                else attack.poison(splits.train))
    attacker = attack if attack.active else attack_of_data(splits.attack)  # only an oracle control may see it
    plan = (defense.plan(poisoned.records, splits.defense_pool, attacker=attacker) if defense.oracle
            else defense.plan(poisoned.records, splits.defense_pool))
    trained_on = stage_rows(plan, len(poisoned.records), poisoned.poisoned_indices)
    settings = TrainerSettings.from_config(cfg.trainer, seed)
    settings.validate(out_dir, ("stage1", "stage2") if plan.stage2 else ("stage1",))
    warnings = trigger_collisions(attack.triggers, splits.train, poisoned.poisoned_indices, attack.field)
    react_rows = reactivation_rows(cfg.eval.reactivation, attack, splits.defense_pool, splits.spare_poisoned)

    # 2. Evaluation sets, judged by the target's judge, on prompts no stage trains on.
    judge = judges.resolve(judges.judge_spec(cfg.eval.judge, attack.active, splits.judge), attack.target)
    prompts = eval_prompts(cfg.eval, splits)
    check_held_out(prompts, {"training data": poisoned.records, "the defender's pool": splits.defense_pool,
                             "pretraining data": splits.pretrain}, policy=cfg.eval.held_out)
    model, tokenizer = build(cfg.model.build)
    template = PromptTemplate(tokenizer, **OmegaConf.to_container(cfg.model.template, resolve=True))
    evaluator = build_evaluator(cfg.eval, prompts, attack, plan.info, template, judge, seed,
                                splits.triggered(cfg.eval.split),
                                reference_words=MBDefense(seed=seed).triggers)  # what MB-Defense would insert
    testbed = piece_word_audit(trained_on["stage1"], tokenizer, attack.field)

    # 3. The run dir: config, what each stage trains on, the tracker.
    resuming = rundir.resumable(force=force)
    procs.barrier()  # every process has read the dir's state before the main one changes it
    if procs.is_main:
        rundir.begin(force=force)
        OmegaConf.save(OmegaConf.create(resolved), out_dir / "resolved_config.yaml")
        write_stage_data(out_dir / "data", trained_on)
    procs.barrier()
    if resuming:
        log.info("resuming the unfinished job in %s", out_dir)
    names = {"attack": splits.attack or cfg.attack.name,  # pre-poisoned data names the attack that poisoned it
             "defense": cfg.defense.name, "model": cfg.model.name, "data": splits.name}
    tracker = build(cfg.logger) if procs.is_main and cfg.get("logger") else NullTracker()
    tracker.start(resolved, name=f"{names['attack']}-{names['defense']}-s{seed}", job_type=names["defense"],
                  group=cfg.sweep_id if in_multirun() else None, tags=[f"{k}:{v}" for k, v in names.items()])

    # 4. Train stage 1 and stage 2, evaluating after each; 5. the re-activation test.
    job = StageJob(out_dir=out_dir, settings=settings, procs=procs, log=tracker.log,
                   stage1_key=stage1_key(records_hash(plan.stage1), OmegaConf.to_container(cfg.model, resolve=True),
                                         settings, mbdef.__version__),
                   eval_key=cache_key(eval=OmegaConf.to_container(cfg.eval, resolve=True), sets=evaluator.fingerprint()),
                   cache_dir=cfg.paths.cache_dir if settings.config["cache_stage1"] else None,
                   base={"records": splits.pretrain, "identity": {"model": OmegaConf.to_container(cfg.model, resolve=True),
                                                                  "version": mbdef.__version__},
                         "cache_dir": cfg.paths.base_cache_dir if settings.config["cache_stage1"] else None}
                   if cfg.model.pretrain and splits.pretrain else None,
                   periodic_every=cfg.eval.periodic_every, periodic_limit=cfg.eval.periodic_limit)
    try:
        results = run_stages(model, tokenizer, template, plan.stage1, plan.stage2, evaluator, job)
        log_final(tracker, results)
        procs.barrier()  # the re-activation test trains on every process again
        if procs.is_main and cfg.save_model:
            model.save_pretrained(out_dir / "model", safe_serialization=True)
            tokenizer.save_pretrained(out_dir / "model")
        if procs.is_main:
            finish_stage_dirs(out_dir)
        if react_rows is not None:
            results["reactivation"] = reactivation_test(cfg.eval.reactivation, model, tokenizer, template, attack,
                                                        react_rows, evaluator, seed, lora=settings.lora("stage2"),
                                                        **settings.shared("reactivation"))
            r = results["reactivation"]
            tracker.summary({f"reactivation/asr_at_{s}": a for s, a in zip(r["step"], r["asr"])})
    except BaseException:
        log.exception("run failed; re-run the same command to resume from its last checkpoint (%s)", out_dir)
        tracker.finish(exit_code=1)
        raise

    # 6. results.json, then COMPLETE.json: only now does a re-run skip this job.
    results = RunResults.from_parts(dict(
        results, **names, seed=seed,
        poison={"rate": attack.poison_rate, "n_poisoned": poisoned.n_poisoned, "n_train": len(poisoned.records),
                "poisoned_data_hash": records_hash(poisoned.records), **attack.describe()},
        judge=judge.name, defense_info=plan.info, eval_split=cfg.eval.split, testbed=testbed,
        trained_on={k: {src: sum(r["source"] == src for r in rows) for src in sorted({r["source"] for r in rows})}
                    for k, rows in trained_on.items()}, template=template.describe(),
        labels={"poisoned_training_data": poisoned.n_poisoned > 0 or bool(plan.info.get("defensive_triggers")),
                "may_contain_backdoor": poisoned.n_poisoned > 0},
        security={"trust_remote_code": bool(cfg.model.build.get("trust_remote_code", False))},
        warnings=warnings, config_hash=rundir.hash, resumed=resuming,
        n_params=sum(p.numel() for p in model.parameters()),
        versions={"mbdef": mbdef.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                  "trl": trl.__version__, "python": platform.python_version()},
        device=str(next(model.parameters()).device), output_dir=str(out_dir), world_size=procs.world_size,
    )).to_dict()
    results["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    if not procs.is_main:
        return results
    if cfg.save_model:
        write_model_card(out_dir / "model", results)
    write_json_atomic(results, out_dir / "results.json")
    rundir.complete()
    tracker.summary({k: results[k] for k in FINAL_KEYS if k in results})
    tracker.finish(exit_code=0)
    asr = results["asr"]  # None when there is no attack
    log.info("%s / %s: ASR %s  CACC %.3f  -> %s", names["attack"], names["defense"],
             "n/a" if asr is None else f"{asr:.3f}", results["cacc"], out_dir / "results.json")
    return results
