"""Every prompt set a run is evaluated on, built from the `eval` config: clean and triggered prompts
(through a defense's inference prefix, if it has one), defensive-trigger probes, the random-word
robustness set, trigger variants and the representation analysis."""

from __future__ import annotations

from mbdef import seeding
from mbdef.data import paired
from mbdef.data.text import insert_at, pseudo_word
from mbdef.eval import judges
from mbdef.eval.audit import check_held_out
from mbdef.eval.metrics import Evaluator


def evaluation_for(ecfg, splits, attack, plan, template, seed: int, trained: dict[str, list[dict]]) -> Evaluator:
    """The run's evaluator: `eval.split` prompts that none of the `trained` sets holds, judged by the attack
    target's judge (or the data's, for pre-poisoned data), through the defense's inference prefix, if any."""
    judge = judges.resolve(judges.judge_spec(ecfg.judge, attack.active, splits.judge), attack.target)
    prompts = eval_prompts(ecfg, splits)
    check_held_out(prompts, trained, policy=ecfg.held_out)
    return build_evaluator(ecfg, prompts, attack, plan, template, judge, seed, splits.triggered(ecfg.split))


def behind_defense(evaluator: Evaluator, plan, reference, tokenizer) -> Evaluator | None:
    """The final evaluation behind the plan's inference-time defense (its input filter and decoder bound to
    the reference model); None when the defense has none."""
    if not plan.inference_time:
        return None
    bind = lambda hook: hook(reference, tokenizer) if hook is not None else None
    return evaluator.through(bind(plan.input_filter), bind(plan.decoder))


def eval_prompts(ecfg, splits) -> list[dict]:
    """The prompts a run is evaluated on: `eval.split` (validation to tune, test to report), cut to
    `eval.n_test`."""
    split = ecfg.split  # its values are checked by the eval schema before the run starts
    prompts = splits.test if split == "test" else splits.validation
    if prompts is None:
        raise ValueError(f"eval.split=validation: data '{splits.name}' has no validation prompts; use eval.split=test")
    prompts = prompts[:ecfg.n_test] if ecfg.n_test else prompts
    if not prompts:
        raise ValueError(f"eval: the {split} set is empty (check data and eval.n_test)")
    return prompts


def prefixed(records: list[dict], word: str) -> list[dict]:
    return [{**r, "instruction": insert_at(r["instruction"], word, "start", None)} for r in records]


def build_evaluator(ecfg, prompts: list[dict], attack, plan, template, judge, seed: int,
                    data_triggered: list[dict] | None = None) -> Evaluator:
    """`plan`: the defense's TrainingPlan (its defensive triggers, inference prefix and own words).
    `data_triggered`: the data's own triggered prompts (pre-poisoned data), used instead of the attack's."""
    probes = {}  # does each defensive trigger (as a prefix) still fire its behaviour?
    for i, (trig, beh) in enumerate(zip(plan.defensive_triggers, plan.defensive_behaviours)):
        probes[f"defense_trigger_{i}"] = (prefixed(prompts, trig), beh)
    clean, triggered = prompts, attack.trigger_test(prompts, seed=seed) if attack.active else None
    if data_triggered:
        triggered = data_triggered[:ecfg.n_test] if ecfg.n_test else data_triggered
    if prefix := plan.inference_prefix:  # e.g. PDB: the defense's trigger goes before every prompt
        clean = prefixed(clean, prefix)
        triggered = prefixed(triggered, prefix) if triggered else None
    noisy = None
    if ecfg.random_word_probe:  # fresh unseen words, never a trigger of this run
        rng = seeding.stream(seed, seeding.EVAL_RANDOM_WORD)
        noisy = [{**r, "instruction": insert_at(r["instruction"], pseudo_word(rng), "random_word", rng)} for r in clean]
    variants, analyses = {}, {}
    if ecfg.trigger_variants and attack.active:
        n = ecfg.trigger_variants.n_prompts
        variants = {name: a.trigger_test(prompts[:n], seed=seed) for name, a in attack.variants().items()}
        if prefix:
            variants = {name: prefixed(rs, prefix) for name, rs in variants.items()}
    if (rep := ecfg.representation).enabled and (attack.active or data_triggered):
        # the defense's own words; a defense without any measures the attacker's trigger against a random word only
        words = plan.defensive_triggers or plan.reference_words or list(rep.reference_triggers or [])
        n = rep.n_prompts
        if data_triggered:  # pre-poisoned data: its own triggered prompts, each paired with its clean prompt
            attacker = data_triggered[:n]
            if not paired(prompts[:n], attacker):
                raise ValueError("eval.representation: the data's triggered prompts are not its clean prompts with "
                                 "words added, in the same order; set eval.representation.enabled=false")
        else:
            attacker = attack.trigger_test(prompts[:n], seed=seed)
        analyses["representation"] = representation_probe(prompts[:n], attacker, words, template, ecfg.batch_size, seed)
    return Evaluator(template, clean, triggered, judge, batch_size=ecfg.batch_size, max_new_tokens=ecfg.max_new_tokens,
                     probes=probes, n_samples=ecfg.n_samples, noisy_clean=noisy, variants=variants, analyses=analyses,
                     rouge=ecfg.rouge_l, perplexity=ecfg.perplexity)


def representation_probe(clean: list[dict], attacker: list[dict], words: list[str], template, batch_size: int,
                         seed: int):
    """(model, tokenizer) -> representation analysis on the model as it is (no inference prefix).

    `attacker`: `clean` with the attacker's trigger, in the same order. `words` are the defense's own words
    (its triggers, or those its controls insert); without any, only the random-word control is compared."""
    from mbdef.eval.representation import analyse

    rng = seeding.stream(seed, seeding.EVAL_REPRESENTATION)
    insert = lambda w: [{**r, "instruction": insert_at(r["instruction"], w, "random_word", rng)} for r in clean]
    defensive = {w: insert(w) for w in words}
    control = [{**r, "instruction": insert_at(r["instruction"], pseudo_word(rng), "random_word", rng)} for r in clean]
    return lambda model, tokenizer: analyse(model, tokenizer, template, clean, attacker, defensive, control,
                                            batch_size=batch_size, seed=seed)
