"""The experiment: data -> attack -> defense -> training (two stages) -> eval -> results.json.

`run(cfg)` reads as that pipeline and is pure of Hydra's runtime: tests call it with a composed config, and
`mbdef.cli` only wraps it (deciding the progress display and the W&B group from Hydra's launcher). Each step
lives in its package; this module only wires them.
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from mbdef import seeding
from mbdef.attacks import poison_training_set
from mbdef.defenses.base import plan_stages
from mbdef.eval.audit import piece_word_audit, trigger_collisions
from mbdef.eval.prompt_sets import behind_defense, evaluation_for
from mbdef.eval.reactivation import reactivation_rows, reactivation_test
from mbdef.io import build, redact
from mbdef.models import PromptTemplate
from mbdef.report.card import write_model_card
from mbdef.results import RunResults
from mbdef.rundir import RunDir
from mbdef.schemas import validate
from mbdef.tracking import log_final, start_tracker
from mbdef.training import configure_progress, set_threads
from mbdef.training.distributed import Processes
from mbdef.training.reference import reference_model
from mbdef.training.settings import TrainerSettings
from mbdef.training.stage_data import source_counts, stage_rows, write_stage_data
from mbdef.training.stages import StageJob, keep_final_model, run_stages

log = logging.getLogger("mbdef")


def run(cfg: DictConfig, progress: str | None = None, group: str | None = None) -> dict:
    """One job. A finished job of the same config returns its saved results; an unfinished one resumes.
    `progress`: bars or lines (default: `cfg.progress`, auto meaning bars); `group`: the W&B group (a sweep)."""
    t0, seed = time.perf_counter(), cfg.seed
    validate(cfg)  # every declared key's type and range, before any file, data or model is touched
    resolved = redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))  # ??? is reported later
    rundir = RunDir.prepare(cfg.paths.output_dir, resolved)
    if (done := rundir.finished(force=cfg.force)) is not None:
        return done
    label, procs = start_process(cfg, progress)

    # 1. Data -> attack (a poisoned copy) -> defense plan: everything cheap first, so bad input fails before training.
    splits, attack, defense = build(cfg.data), build(cfg.attack), build(cfg.defense)
    poisoned, attacker = poison_training_set(attack, splits)  # the attacker's trigger: for a positive control only
    plan = plan_stages(defense, poisoned.records, splits.defense_pool, attacker)
    trained_on = stage_rows(plan, len(poisoned.records), poisoned.poisoned_indices)
    settings = TrainerSettings.from_config(cfg.trainer, seed)
    settings.validate(rundir.path, tuple(trained_on))
    react_rows = reactivation_rows(cfg.eval.reactivation, attack, splits.defense_pool, splits.spare_poisoned)

    # 2. The model, and evaluation on prompts that no stage and no defender ever holds.
    model, tokenizer = build(cfg.model.build)
    template = PromptTemplate(tokenizer, **OmegaConf.to_container(cfg.model.template, resolve=True))
    evaluator = evaluation_for(cfg.eval, splits, attack, plan, template, seed, {
        "training data": poisoned.records, "the defender's pool": splits.defense_pool, "pretraining data": splits.pretrain})

    # 3. The run dir (config, what each stage trains on) and the tracker.
    resumed = rundir.start(procs, cfg.force, lambda path: write_stage_data(path / "data", trained_on))
    names = {"attack": splits.attack or cfg.attack.name,  # pre-poisoned data names the attack that poisoned it
             "defense": cfg.defense.name, "model": cfg.model.name, "data": splits.name}
    tracker = start_tracker(cfg.get("logger"), resolved, names, seed, group, enabled=procs.is_main)

    # 4. Stage 1 and stage 2, each followed by the evaluation (the final one behind an inference-time defense,
    # bound to its reference model now, so that a bad reference fails before training); 5. the re-activation test.
    job = StageJob.from_config(cfg, rundir.path, settings, procs, tracker.log, plan.stage1, evaluator.fingerprint(),
                               splits.pretrain, label)
    reference = reference_model(plan, job, lambda: build(cfg.model.build), cfg.model.build._target_, template, settings)
    defended = behind_defense(evaluator, plan, reference, tokenizer)
    try:
        measured = run_stages(model, tokenizer, template, plan, evaluator, job, defended)
        keep_final_model(model, tokenizer, rundir.path, procs, save=cfg.save_model)
        if react_rows is not None:
            measured["reactivation"] = reactivation_test(cfg.eval.reactivation, model, tokenizer, template, attack,
                                                         react_rows, evaluator, seed,
                                                         settings.trainer("reactivation", "stage2"))
        log_final(tracker, measured)
    except BaseException:
        log.exception("run failed; re-run the same command to resume from its last checkpoint (%s)", rundir.path)
        tracker.finish(exit_code=1)
        raise

    # 6. results.json (then COMPLETE.json: only now does a re-run skip this job) and the model card.
    results = collect_results(cfg, measured, names, attack, poisoned, plan, trained_on, splits, template, evaluator,
                              model, tokenizer, rundir, resumed, procs, t0)
    if procs.is_main:
        finish(cfg, results, rundir, tracker)
    return results


def start_process(cfg: DictConfig, progress: str | None) -> tuple[str, Processes]:
    """Seeds, threads and the progress display of this process; `Processes`: under torchrun / accelerate launch
    all processes train, only the main one writes."""
    seeding.seed_libraries(cfg.seed)
    set_threads(cfg.trainer.threads)
    label = configure_progress(progress or ("bars" if cfg.progress == "auto" else cfg.progress),
                               f"{cfg.attack.name}/{cfg.defense.name} s{cfg.seed}")
    return label, Processes()


def collect_results(cfg, measured, names, attack, poisoned, plan, trained_on, splits, template, evaluator, model,
                    tokenizer, rundir, resumed, procs, t0) -> dict:
    """What results.json holds: the stages' measurements and what identifies and describes the run."""
    results = RunResults.collect(
        measured, **names, seed=cfg.seed, eval_split=cfg.eval.split, judge=evaluator.judge.name,
        poison=attack.summary(poisoned), defense_info=plan.describe(), trained_on=source_counts(trained_on),
        testbed=piece_word_audit(trained_on["stage1"], tokenizer, attack.field), template=template.describe(),
        warnings=trigger_collisions(attack.triggers, splits.train, poisoned.poisoned_indices, attack.field)
        + [part["warning"] for part in measured.values() if isinstance(part, dict) and "warning" in part],  # and the stages'
        security={k: bool(cfg.model.build.get(k, False)) for k in ("trust_remote_code", "use_kernels")},  # tiny: neither key
        config_hash=rundir.hash, resumed=resumed, n_params=sum(p.numel() for p in model.parameters()),
        device=str(next(model.parameters()).device), output_dir=str(rundir.path), world_size=procs.world_size,
    ).to_dict()
    results["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    return results


def finish(cfg: DictConfig, results: dict, rundir: RunDir, tracker) -> None:
    """The main process's last writes: the model card, results.json and COMPLETE.json, the tracker's end."""
    if cfg.save_model:
        write_model_card(rundir.path / "model", results)
    rundir.complete(results)
    tracker.finish(exit_code=0)
    asr = "n/a" if results["asr"] is None else f"{results['asr']:.3f}"
    log.info("%s / %s: ASR %s  CACC %.3f  -> %s", results["attack"], results["defense"], asr, results["cacc"],
             rundir.path / "results.json")
