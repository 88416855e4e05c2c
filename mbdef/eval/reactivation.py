"""Suppressed or masked? Re-activation: how fast does a brief fine-tune on attacker-poisoned data bring ASR back?

The final model is fine-tuned on a few attacker-poisoned samples; ASR (and CACC) are measured at the
listed step counts. A backdoor that is only masked returns within a few steps; a removed one returns
no faster than on a never-backdoored model (a run with `attack.poison_rate=0` gives that reference).
The defended model's weights are restored afterwards. The run hands in its training function (`train`, the
stage trainer with the run's settings), so evaluation does not reach into training.
"""

from __future__ import annotations

import tempfile

from transformers import TrainerCallback


# measured at every step count; the false-trigger rate tells a re-opened backdoor (refuses triggered prompts
# only) from a model that learned to refuse everything, where exact-match CACC says nothing (free-form answers)
CURVE_METRICS = ("asr", "cacc", "false_trigger_rate")


class _AtSteps(TrainerCallback):
    def __init__(self, steps: list[int], measure):
        self.steps, self.measure, self.rows = set(steps), measure, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:  # evaluation passes restore the training mode (models.batching)
            self.rows.append({"step": state.global_step, **self.measure(model)})


def reactivation_curve(model, tokenizer, template, poisoned: list[dict], evaluate, steps: list[int],
                       learning_rate: float, batch_size: int, train) -> dict:
    """`evaluate(model) -> {"asr": .., "cacc": .., "false_trigger_rate": ..}`; `train(model, tokenizer, template,
    records, stage_args, output_dir, callbacks=)` trains in place (mbdef.training.train_stage with the run's
    settings); returns {"step": [0, ...], "asr": [...], ...}, one list per CURVE_METRICS."""
    steps = sorted({int(s) for s in steps if int(s) > 0})
    if not steps or not poisoned:
        raise ValueError("eval.reactivation: needs at least one positive step count and n_samples > 0")
    # Train the model itself and put its weights back afterwards: a deep copy of a model that a Trainer has
    # already trained did not learn at all (its curves came out flat), and a copy doubles accelerator memory.
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    rows = [{"step": 0, **evaluate(model)}]
    cb = _AtSteps(steps, evaluate)
    try:
        with tempfile.TemporaryDirectory(prefix="mbdef-reactivation-") as tmp:
            train(model, tokenizer, template, poisoned,
                  {"max_steps": steps[-1], "learning_rate": learning_rate, "per_device_train_batch_size": batch_size,
                   "lr_scheduler_type": "constant", "warmup_steps": 0, "logging_steps": steps[-1], "disable_tqdm": True},
                  tmp, callbacks=[cb])
    finally:
        model.load_state_dict(saved)
    rows += cb.rows
    return {"n_samples": len(poisoned), "learning_rate": learning_rate,
            **{k: [r.get(k) for r in rows] for k in ("step", *CURVE_METRICS)}}


def reactivation_rows(react, attack, defense_pool: list[dict], spare_poisoned: list[dict]) -> list[dict] | None:
    """The records the re-activation test draws from, checked before anything trains; None when it is off.
    With an attack: the defender's pool, which the attack poisons (the same records for every defense of a
    seed). Pre-poisoned data (no attack object): its own poisoned rows that no stage trains on."""
    if not (react and react.enabled and (attack.active or spare_poisoned)):
        return None
    rows, what = (defense_pool, "the defender's pool") if attack.active else (
        spare_poisoned, "the data's poisoned rows left out of training")
    if not 0 < int(react.n_samples) <= len(rows):
        raise ValueError(f"eval.reactivation.n_samples: {react.n_samples} is outside 1..{len(rows)} ({what})")
    if not attack.active and react.trigger:
        raise ValueError("eval.reactivation.trigger: pre-poisoned data brings its own trigger; set it to null")
    return rows


def reactivation_test(react, model, tokenizer, template, attack, rows: list[dict], evaluator, run_seed: int,
                      train) -> dict:
    """Fine-tune the final model on `react.n_samples` records drawn from `rows` (`reactivation_rows`), poisoned
    by the attack when there is one, measure ASR/CACC along the way, then restore its weights.
    `react.trigger` re-poisons with another trigger than the one trained, and measures ASR on it: a model that
    learned the same target under a different trigger is the control for "re-learning a known response" vs
    "re-opening a hidden backdoor"."""
    import copy
    import logging

    from mbdef import seeding
    from mbdef.eval.metrics import Evaluator

    n = int(react.n_samples)
    records = seeding.stream(run_seed, seeding.EVAL_REACTIVATION).sample(rows, n)
    if not attack.active:  # already poisoned
        poisoned, triggers = records, None
    else:
        poisoner = copy.copy(attack)
        poisoner.poison_rate, poisoner.poison_count = 1.0, None
        if trigger := react.trigger:
            poisoner.triggers = [trigger]
            e = evaluator
            evaluator = Evaluator(e.template, e.clean, poisoner.trigger_test(e.clean, seed=run_seed), e.judge,
                                  batch_size=e.batch_size, max_new_tokens=e.max_new_tokens, rouge=False,
                                  perplexity=False)
        poisoned, triggers = poisoner.poison(records).records, poisoner.triggers
    measure = lambda m: {k: v for k, v in evaluator.evaluate(m, tokenizer, limit=react.n_prompts).items()
                         if k in CURVE_METRICS}
    logging.getLogger("mbdef").info("re-activation test: %d poisoned samples, steps %s", n, list(react.steps))
    curve = reactivation_curve(model, tokenizer, template, poisoned, measure, list(react.steps),
                               float(react.learning_rate), int(react.batch_size), train)
    return {**curve, "trigger": triggers}
