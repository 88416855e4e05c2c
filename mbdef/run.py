"""The experiment: data -> attack -> defense -> training (two stages) -> eval -> results.json.

`run(cfg)` is pure of Hydra's runtime: tests call it with a composed config. `main` only wraps it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import random
import shutil
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import transformers
import trl
from omegaconf import DictConfig, OmegaConf

import mbdef
from mbdef import seeding
from mbdef.attacks import Poisoned, records_hash
from mbdef.data.text import insert_at, pseudo_word
from mbdef.eval import Evaluator, judges
from mbdef.io import build, redact, write_json_atomic
from mbdef.models import PromptTemplate
from mbdef.rundir import RunDir, config_hash
from mbdef.training.sft import lora_config
from mbdef.training import (PeriodicMetrics, Stage1Cache, StageLogger, cache_key, configure_progress, set_threads,
                            sft_config, train_stage)
from mbdef.eval.audit import check_held_out, piece_word_audit
from mbdef.training.cache import load_snapshot, save_snapshot
from mbdef.training.distributed import Processes
from mbdef.training.pretrain import pretrained_base
from mbdef.training.sft import progress_bars
from mbdef.training.stage_data import stage_rows, write_stage_data

log = logging.getLogger("mbdef")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _stage_args(cfg: DictConfig, stage: str) -> dict:
    return OmegaConf.to_container(cfg.trainer[stage], resolve=True)


def _sft_settings(cfg: DictConfig, stage: str) -> dict:
    """Trainer settings of one stage (validation, training and the stage-1 cache key all use these); each
    stage's data order and dropout come from its own stream of the run seed."""
    t = cfg.trainer
    return {"precision": t.precision, "seed": seeding.derive_seed(cfg.seed, f"training/{stage}"),
            "max_length": t.max_length, "padding_free": t.padding_free}


def _lora(cfg: DictConfig, stage: str) -> dict | None:
    """`trainer.lora` for `stage` (null = full fine-tuning; `trainer.lora_stages` names the stages that use
    it, e.g. [stage2] for LoRA weight recovery on a fully fine-tuned model)."""
    lora = cfg.trainer.get("lora")
    stages = cfg.trainer.get("lora_stages") or ["stage1", "stage2"]
    if unknown := sorted(set(stages) - {"stage1", "stage2"}):
        raise ValueError(f"trainer.lora_stages: unknown stage(s) {unknown}; known: ['stage1', 'stage2']")
    return OmegaConf.to_container(lora, resolve=True) if lora and stage in stages else None


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
    out_dir = _prepare_output_dir(cfg)
    resolved = redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))  # ??? is reported below
    rundir = RunDir(out_dir, config_hash(resolved))
    if not cfg.get("force") and (done := rundir.completed_results()) is not None:
        log.info("already complete, skipped (force=true redoes it): %s", out_dir / "results.json")
        return done
    if (changed := rundir.finished_with_other_config(resolved)) is not None:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        log.info("%s holds a finished run of another config (changed: %s): re-running; its files move to "
                 "superseded/", out_dir, shown or "mbdef's config hashing")
    seed_everything(cfg.seed)
    set_threads(cfg.trainer.get("threads"))
    bars = _progress_mode(cfg.get("progress", "auto")) == "bars"
    configure_progress("bars" if bars else "lines", f"{cfg.attack.name}/{cfg.defense.name} s{cfg.seed}")
    procs = Processes()  # torchrun / accelerate launch: all processes train, only the main one writes

    # Everything cheap first, so bad config or data fails before any training.
    splits = build(cfg.data)
    attack = build(cfg.attack)
    defense = build(cfg.defense)
    if splits.poisoned_indices and attack.active:
        raise ValueError(f"attack={cfg.attack.name}: data '{splits.name}' is already poisoned; use attack=none")
    poisoned = Poisoned(list(splits.train), splits.poisoned_indices) if splits.poisoned_indices else attack.poison(splits.train)
    plan = defense.plan(poisoned.records, splits.defense_pool)
    judge_spec = cfg.eval.judge
    judge_name = judge_spec if isinstance(judge_spec, str) else judge_spec.get("name")
    if judge_name == "auto" and not attack.active and splits.judge:
        judge_spec = splits.judge  # pre-poisoned data names the judge its target calls for
    judge = judges.resolve(judge_spec, attack.target)
    test = _eval_prompts(cfg.eval, splits)
    check_held_out(test, {"training data": poisoned.records, "the defender's pool": splits.defense_pool,
                          "pretraining data": splits.pretrain}, policy=cfg.eval.get("held_out", "error"))
    for stage in ("stage1", "stage2") if plan.stage2 else ("stage1",):  # bad trainer keys fail now, not mid-run
        sft_config(_stage_args(cfg, stage), out_dir / f"trainer_{stage}", **_sft_settings(cfg, stage))
    for stage in ("stage1", "stage2"):
        if lora := _lora(cfg, stage):
            lora_config(lora)
    warnings = _trigger_collisions(attack.triggers, splits.train, poisoned.poisoned_indices, attack.field)
    model, tokenizer = build(cfg.model.build)
    template = PromptTemplate(tokenizer, **OmegaConf.to_container(cfg.model.template, resolve=True))
    evaluator = _evaluator(cfg, splits, attack, plan, test, template, judge)
    trained_on = stage_rows(plan, len(poisoned.records), poisoned.poisoned_indices)
    testbed = piece_word_audit(trained_on["stage1"], tokenizer, attack.field)

    resuming = rundir.resumable(force=bool(cfg.get("force")))
    procs.barrier()  # every process has read the dir's state before the main one changes it
    if procs.is_main:
        rundir.begin(force=bool(cfg.get("force")))
        OmegaConf.save(OmegaConf.create(resolved), out_dir / "resolved_config.yaml")
        write_stage_data(out_dir / "data", trained_on)
    procs.barrier()
    if resuming:
        log.info("resuming the unfinished job in %s", out_dir)
    attack_name, defense_name = cfg.attack.name, cfg.defense.name
    tracker = build(cfg.logger) if cfg.get("logger") and procs.is_main else None
    if tracker is not None:
        tracker.start(resolved, name=f"{attack_name}-{defense_name}-s{cfg.seed}", job_type=defense_name,
                      group=cfg.get("sweep_id") if _in_multirun() else None,
                      tags=[f"attack:{attack_name}", f"defense:{defense_name}", f"model:{cfg.model.name}",
                            f"data:{splits.name}"])
    log_fn = tracker.log if tracker is not None else (lambda m, s: None)
    try:
        results = _train_and_evaluate(cfg, out_dir, model, tokenizer, template, plan, evaluator, log_fn, tracker,
                                      procs, splits.pretrain)
        if (react := cfg.eval.get("reactivation")) and react.enabled and attack.active:
            results["reactivation"] = _reactivation(cfg, react, model, tokenizer, template, attack, splits, evaluator)
            if tracker is not None:
                r = results["reactivation"]
                tracker.summary({f"reactivation/asr_at_{s}": a for s, a in zip(r["step"], r["asr"])})
    except BaseException:
        log.exception("run failed; re-run the same command to resume from its last checkpoint (%s)", out_dir)
        if tracker is not None:
            tracker.finish(exit_code=1)
        raise

    labels = {"poisoned_training_data": poisoned.n_poisoned > 0 or bool(plan.info.get("defensive_triggers")),
              "may_contain_backdoor": poisoned.n_poisoned > 0}
    build_cfg = cfg.model.build
    results.update(
        attack=attack_name, defense=defense_name, model=cfg.model.name, data=splits.name, seed=cfg.seed,
        poison={"rate": attack.poison_rate, "n_poisoned": poisoned.n_poisoned, "n_train": len(poisoned.records),
                "poisoned_data_hash": records_hash(poisoned.records), **attack.describe()},
        judge=judge.name, defense_info=plan.info, eval_split=cfg.eval.get("split", "test"), testbed=testbed,
        trained_on={k: {src: sum(r["source"] == src for r in rows) for src in sorted({r["source"] for r in rows})}
                    for k, rows in trained_on.items()}, template=template.describe(), labels=labels,
        security={"trust_remote_code": bool(build_cfg.get("trust_remote_code", False))},
        warnings=warnings, config_hash=rundir.hash, resumed=resuming,
        n_params=sum(p.numel() for p in model.parameters()),
        versions={"mbdef": mbdef.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                  "trl": trl.__version__, "python": platform.python_version()},
        device=str(next(model.parameters()).device), output_dir=str(out_dir),
    )
    results["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    results["world_size"] = procs.world_size
    if not procs.is_main:
        return results
    if cfg.save_model:
        _write_model_card(out_dir / "model", results)
    write_json_atomic(results, out_dir / "results.json")
    rundir.complete()  # last: only now does a re-run skip this job
    if tracker is not None:
        tracker.summary({k: results[k] for k in ("asr", "cacc", "false_trigger_rate", "triggered_cacc", "rouge_l",
                                                 "perplexity") if k in results})
        tracker.finish(exit_code=0)
    asr = results["asr"]  # None when there is no attack
    log.info("%s / %s: ASR %s  CACC %.3f  -> %s", attack_name, defense_name, "n/a" if asr is None else f"{asr:.3f}",
             results["cacc"], out_dir / "results.json")
    return results


def _eval_prompts(ecfg, splits) -> list[dict]:
    """The prompts this run is evaluated on: `eval.split` (validation to tune, test to report), cut to
    `eval.n_test`."""
    split = ecfg.get("split", "test")
    if split not in ("test", "validation"):
        raise ValueError(f"eval.split: '{split}' is not one of test, validation")
    prompts = splits.test if split == "test" else splits.validation
    if prompts is None:
        raise ValueError(f"eval.split=validation: data '{splits.name}' has no validation prompts; use eval.split=test")
    n_test = ecfg.get("n_test")
    if n_test is not None and n_test < 1:
        raise ValueError(f"eval.n_test: {n_test} leaves no test prompts; use null for the whole test split")
    prompts = prompts[:n_test] if n_test else prompts
    if not prompts:
        raise ValueError(f"eval: the {split} set is empty (check data and eval.n_test)")
    return prompts


def _prefixed(records: list[dict], word: str) -> list[dict]:
    return [{**r, "instruction": insert_at(r["instruction"], word, "start", None)} for r in records]


def _evaluator(cfg, splits, attack, plan, test: list[dict], template, judge) -> Evaluator:
    """Every prompt set a run is evaluated on: clean and triggered test prompts (through a defense's
    inference prefix, if it has one), defensive-trigger probes, the random-word robustness set, trigger
    variants, and the representation analysis."""
    n_test = cfg.eval.get("n_test")
    probes = {}
    if plan.info.get("defensive_triggers"):  # does each defensive trigger (as a prefix) still fire its behaviour?
        for i, (trig, beh) in enumerate(zip(plan.info["defensive_triggers"], plan.info["defensive_behaviours"])):
            probes[f"defense_trigger_{i}"] = (_prefixed(test, trig), beh)
    eval_clean, eval_triggered = test, attack.trigger_test(test, seed=cfg.seed) if attack.active else None
    if splits.triggered_test:  # the data's own triggered prompts (pre-poisoned data)
        eval_triggered = splits.triggered_test[:n_test] if n_test else splits.triggered_test
    if prefix := plan.info.get("inference_prefix"):  # e.g. PDB: the defense's trigger goes before every prompt
        eval_clean = _prefixed(eval_clean, prefix)
        eval_triggered = _prefixed(eval_triggered, prefix) if eval_triggered else None
    noisy = None
    if cfg.eval.get("random_word_probe", True):  # fresh unseen words, never a trigger of this run
        rng = seeding.stream(cfg.seed, seeding.EVAL_RANDOM_WORD)
        noisy = [{**r, "instruction": insert_at(r["instruction"], pseudo_word(rng), "random_word", rng)}
                 for r in eval_clean]
    variants, analyses = {}, {}
    if cfg.eval.get("trigger_variants") and attack.active:
        n = cfg.eval.trigger_variants.n_prompts
        variants = {name: a.trigger_test(test[:n], seed=cfg.seed) for name, a in attack.variants().items()}
        if prefix:
            variants = {name: _prefixed(rs, prefix) for name, rs in variants.items()}
    if (rep := cfg.eval.get("representation")) and rep.enabled and attack.active:
        analyses["representation"] = _representation_probe(cfg, rep, test, attack, plan, template)
    return Evaluator(template, eval_clean, eval_triggered, judge,
                     batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens, probes=probes,
                     n_samples=cfg.eval.n_samples, noisy_clean=noisy, variants=variants, analyses=analyses,
                     rouge=bool(cfg.eval.get("rouge_l", True)), perplexity=bool(cfg.eval.get("perplexity", True)))


def _representation_probe(cfg, rep, test: list[dict], attack, plan, template):
    """(model, tokenizer) -> representation analysis on the model as it is (no inference prefix).

    The "defensive" words are the defense's own triggers; for a defense without any (none, finetune, the
    controls without stage-1 poisoning) they are MB-Defense's default triggers for this seed, so that every
    run of a seed measures the same words and the poisoned model is the baseline for merging."""
    from mbdef.defenses import MBDefense  # orchestration: the reference words MB-Defense would use
    from mbdef.eval.representation import analyse

    clean = test[: rep.n_prompts]
    words = plan.info.get("defensive_triggers") or list(rep.get("reference_triggers") or MBDefense(seed=cfg.seed).triggers)
    rng = seeding.stream(cfg.seed, seeding.EVAL_REPRESENTATION)
    insert = lambda w: [{**r, "instruction": insert_at(r["instruction"], w, "random_word", rng)} for r in clean]
    defensive = {w: insert(w) for w in words}
    control = [{**r, "instruction": insert_at(r["instruction"], pseudo_word(rng), "random_word", rng)} for r in clean]
    attacker = attack.trigger_test(clean, seed=cfg.seed)
    return lambda model, tokenizer: analyse(model, tokenizer, template, clean, attacker, defensive, control,
                                            batch_size=cfg.eval.batch_size, seed=cfg.seed)


def _reactivation(cfg, react, model, tokenizer, template, attack, splits, evaluator) -> dict:
    """Fine-tune the final model on `n_samples` attacker-poisoned records (from the defender's pool, so the
    same records for every defense of a seed), measure ASR/CACC along the way, then restore its weights.
    `eval.reactivation.trigger` re-poisons with another trigger than the one trained, and measures ASR on
    it: a model that learned the same target under a different trigger is the control for "re-learning a
    known response" vs "re-opening a hidden backdoor"."""
    from mbdef.eval.reactivation import reactivation_curve

    n = int(react.n_samples)
    if not 0 < n <= len(splits.defense_pool):
        raise ValueError(f"eval.reactivation.n_samples: {n} is outside 1..{len(splits.defense_pool)} (the defender's pool)")
    records = seeding.stream(cfg.seed, seeding.EVAL_REACTIVATION).sample(splits.defense_pool, n)
    poisoned = copy.copy(attack)
    poisoned.poison_rate, poisoned.poison_count = 1.0, None
    if trigger := react.get("trigger"):
        poisoned.triggers = [trigger]
        e = evaluator
        evaluator = Evaluator(e.template, e.clean, poisoned.trigger_test(e.clean, seed=cfg.seed), e.judge,
                              batch_size=e.batch_size, max_new_tokens=e.max_new_tokens, rouge=False, perplexity=False)
    measure = lambda m: {k: v for k, v in evaluator.evaluate(m, tokenizer, limit=react.n_prompts).items()
                         if k in ("asr", "cacc")}
    log.info("re-activation test: %d poisoned samples, steps %s", n, list(react.steps))
    curve = reactivation_curve(model, tokenizer, template, poisoned.poison(records).records, measure,
                               list(react.steps), float(react.learning_rate), int(react.batch_size),
                               lora=_lora(cfg, "stage2"), **_sft_settings(cfg, "reactivation"))
    return {**curve, "trigger": poisoned.triggers}


def _progress_mode(mode: str) -> str:
    """`auto`: labelled log lines when the launcher runs jobs side by side (their bars would interleave
    into one unreadable line), progress bars otherwise."""
    if mode != "auto":
        return mode
    from hydra.core.hydra_config import HydraConfig

    if _in_multirun():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")) and launcher.get("n_jobs") != 1:
            return "lines"
    return "bars"


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def _trigger_collisions(triggers: list[str], train: list[dict], poisoned_idx: list[int], field: str) -> list[str]:
    """Warn when an attack trigger already occurs in clean (unpoisoned) training text: the backdoor would
    then be trained on clean answers too, and ASR is not what it seems."""
    poisoned, out = set(poisoned_idx), []
    for t in triggers:
        n = sum(f" {t} " in f" {r.get(field) or ''} " for i, r in enumerate(train) if i not in poisoned)
        if n:
            out.append(f"attack trigger '{t}' already occurs in {n} clean training records ({field}); "
                       f"choose a rarer trigger")
            log.warning(out[-1])
    return out


def _write_model_card(folder: Path, results: dict) -> None:
    """Label a saved model so it is never mistaken for a clean artifact."""
    if not folder.is_dir():
        return
    lab = results["labels"]
    warn = ("WARNING: trained on attacker-poisoned data; it may contain a backdoor "
            f"(attack {results['attack']}, triggers {results['poison'].get('triggers')})."
            if lab["may_contain_backdoor"] else "Trained without attacker poison.")
    (folder / "README.md").write_text(
        f"---\ntags: [mbdef, backdoor-research{', poisoned' if lab['may_contain_backdoor'] else ''}]\n---\n"
        f"# mbdef research artifact\n\n{warn}\n\nDefense: {results['defense']}; seed {results['seed']}; "
        f"ASR {results.get('asr')}; CACC {results.get('cacc')}. Labels: {json.dumps(lab)}. "
        f"For research on backdoor defenses only.\n")


def _train_and_evaluate(cfg, out_dir, model, tokenizer, template, plan, evaluator, log_fn, tracker,
                        procs: Processes, pretrain_records: list[dict]) -> dict:
    tcfg, timings = cfg.trainer, {}
    bars = progress_bars()
    periodic = lambda m: {k: v for k, v in evaluator.evaluate(m, tokenizer, limit=cfg.eval.periodic_limit).items()
                          if isinstance(v, (int, float)) and not k.startswith("n_")}

    def stage(name: str, records: list[dict], offset: int):
        cbs = [StageLogger(name, log_fn, offset)]
        if cfg.eval.periodic_every:
            cbs.append(PeriodicMetrics(name, periodic, log_fn, cfg.eval.periodic_every, offset))
        return train_stage(model, tokenizer, template, records, _stage_args(cfg, name), out_dir / f"trainer_{name}",
                           callbacks=cbs, checkpoint_every=tcfg.get("checkpoint_every"), lora=_lora(cfg, name),
                           adapter_dir=out_dir / "adapters" / name if procs.is_main else None,
                           **_sft_settings(cfg, name))

    def snapshot(folder: Path, record: dict) -> None:  # the main process writes; the others wait for it
        if procs.is_main:
            save_snapshot(folder, model, tokenizer, record)
        procs.barrier()

    def replay(s1: dict) -> None:  # stage-1 curves into this job's W&B run when stage 1 was not trained here
        for row in s1.get("log_history", []):
            log_fn({f"stage1/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"},
                   row.get("step", 0))

    # The cache key covers what determines the stage-1 *weights*; its stored metrics also depend on how this
    # job evaluates (test prompts, the attack's trigger, eval settings), e.g. two attacks with nothing
    # poisoned share one clean stage 1 but not its ASR.
    eval_key = cache_key(eval=OmegaConf.to_container(cfg.eval, resolve=True), sets=evaluator.fingerprint())

    def restore_stage1(folder: Path, how: str) -> tuple[dict, dict] | None:
        """Stage 1 from a snapshot (`how`: restored_from = this job's, cached_from = the shared cache)."""
        if (snap := load_snapshot(folder, model)) is None:
            return None
        s1, after1 = snap["train"], snap["metrics"]
        s1[how] = str(folder)
        replay(s1)
        log.info("stage 1 %s %s", how.replace("_", " "), folder)
        if snap.get("eval_key") != eval_key:  # same weights, different test sets or eval settings: measure anew
            t = time.perf_counter()
            after1 = evaluator.evaluate(model, tokenizer, full=True, progress=bars)
            after1["eval_s"] = round(time.perf_counter() - t, 2)
            log.info("stage-1 metrics re-measured: this job evaluates differently from the one that trained it")
        return s1, after1

    base = {}

    def train_and_eval_stage1() -> tuple[dict, dict]:
        if cfg.model.get("pretrain") and pretrain_records:  # only needed when stage 1 trains here
            base.update(pretrained_base(
                model, tokenizer, template, pretrain_records, _stage_args(cfg, "pretrain"),
                cfg.paths.base_cache_dir if tcfg.cache_stage1 else None,
                {"model": OmegaConf.to_container(cfg.model, resolve=True), "version": mbdef.__version__},
                out_dir, procs.is_main, procs.main_holds, **_sft_settings(cfg, "pretrain")))
        s1 = stage("stage1", plan.stage1, 0)
        t = time.perf_counter()
        after1 = evaluator.evaluate(model, tokenizer, full=True, progress=bars)
        after1["eval_s"] = round(time.perf_counter() - t, 2)
        return s1, after1

    # Stage 1: this job's own finished stage 1 (a resumed job), else the shared cache, else train it.
    local1 = out_dir / "stage1_model"
    key = cache_key(records=records_hash(plan.stage1), model=OmegaConf.to_container(cfg.model, resolve=True),
                    stage1=_stage_args(cfg, "stage1"), version=mbdef.__version__, lora=_lora(cfg, "stage1"),
                    **_sft_settings(cfg, "stage1"))
    cache = Stage1Cache(cfg.paths.cache_dir if tcfg.cache_stage1 else None)
    if (restored := restore_stage1(local1, "restored_from")) is not None:
        s1, after1 = restored
    elif cache.root is None:
        s1, after1 = train_and_eval_stage1()
        snapshot(local1, {"train": s1, "metrics": after1, "eval_key": eval_key})
    else:
        with procs.main_holds(cache.lock(key)):
            if (restored := restore_stage1(cache.path(key), "cached_from")) is not None:
                s1, after1 = restored
            else:
                s1, after1 = train_and_eval_stage1()
                if procs.is_main:
                    cache.publish(key, model, tokenizer, {"train": s1, "metrics": after1, "eval_key": eval_key})
    trained_here = "cached_from" not in s1 and "restored_from" not in s1
    eval1_s = after1.pop("eval_s", 0.0)
    timings["stage1_s"] = s1["seconds"] if trained_here else 0.0
    timings["pretrain_s"] = base.get("seconds", 0.0) if base and not base["cached"] else 0.0
    if base:
        s1["base"] = {k: base[k] for k in ("key", "steps", "cached")}
    timings["eval_s"] = eval1_s if trained_here else 0.0
    results = {"stage1": {k: v for k, v in s1.items() if k != "log_history"},
               "after_stage1": {k: v for k, v in after1.items() if k != "samples"}}
    step = s1["steps"]

    final = dict(after1)
    if plan.stage2:
        local2 = out_dir / "stage2_model"
        if (snap := load_snapshot(local2, model)) is not None:
            s2 = {**snap["train"], "restored_from": str(local2)}
        else:
            s2 = stage("stage2", plan.stage2, step)
            snapshot(local2, {"train": s2})
        timings["stage2_s"] = 0.0 if "restored_from" in s2 else s2["seconds"]
        results["stage2"] = {k: v for k, v in s2.items() if k != "log_history"}
        step += s2["steps"]
        t = time.perf_counter()
        final = evaluator.evaluate(model, tokenizer, full=True, progress=bars)
        timings["eval_s"] += round(time.perf_counter() - t, 2)
    samples = final.pop("samples", [])
    representation = {k: m.pop("representation") for k, m in (("after_stage1", after1), ("final", final))
                      if "representation" in m}
    results["after_stage1"].pop("representation", None)
    if representation:
        results["representation"] = representation
    if tracker is not None:
        tracker.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float))}, step)
        tracker.log({f"final/trigger_variant/{k}": v for k, v in final.get("trigger_variants", {}).items()}, step)
        for stage, rep in representation.items():  # per-layer curves: x = layer
            for key in ("cos_attacker_defensive", "cos_attacker_control"):
                if key in rep:
                    tracker.summary({f"representation/{stage}/{key}/layer_{i}": v for i, v in enumerate(rep[key])})
        tracker.table("final/samples", samples, step)
    procs.barrier()  # e.g. the re-activation test after this trains on every process again
    if procs.is_main:
        if cfg.save_model:
            model.save_pretrained(out_dir / "model", safe_serialization=True)
            tokenizer.save_pretrained(out_dir / "model")
        for folder in (local1, out_dir / "stage2_model"):  # only needed to resume; the final model is in model/
            shutil.rmtree(folder, ignore_errors=True)
    return {**results, **final, "samples": samples, "timings": timings, "steps": step}


@hydra.main(version_base="1.3", config_path=str(mbdef.CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    results = run(cfg)
    return results.get("asr")


def main() -> None:
    """The `mbdef` command: refuse clear-text secrets before Hydra writes any file, then run."""
    import sys

    from mbdef.io import refuse_literal_secrets

    refuse_literal_secrets("mbdef", sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
