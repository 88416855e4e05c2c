"""Evidence beyond ASR: representation analysis, trigger variants, re-activation, per-example verdicts."""

import random

import pytest
import torch

from mbdef.attacks import BadNet, Refusal
from mbdef.data.synthetic import synthetic_splits
from mbdef.data.text import insert_at
from mbdef.eval.representation import analyse
from mbdef.models import PromptTemplate, build_tiny


def test_representation_shifts_are_exact_for_identical_and_distinct_insertions():
    model, tok = build_tiny(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    template = PromptTemplate(tok, preamble=False)
    clean = synthetic_splits(n_train=10, n_defense_pool=10, n_test=24, seed=0).test
    rng = random.Random(0)
    attacker = BadNet(Refusal()).trigger_test(clean, seed=0)
    same = [dict(r) for r in attacker]  # a "defensive trigger" identical to the attacker's: cosine 1 everywhere
    other = [{**r, "instruction": insert_at(r["instruction"], "QuornDelt", "random_word", rng)} for r in clean]
    rep = analyse(model, tok, template, clean, attacker, {"BadMagic": same, "QuornDelt": other}, other)
    assert rep["layers"] == [0, 1, 2] and rep["n_prompts"] == 24
    each = rep["cos_attacker_defensive_each"]
    assert each["BadMagic"][1:] == pytest.approx([1.0, 1.0])
    assert each["QuornDelt"] == pytest.approx(rep["cos_attacker_control"])  # control = the same insertions
    assert rep["cos_attacker_control"][0] == 0.0  # layer 0: the last prompt token's embedding never moves
    assert all(-1.0 <= c <= 1.0 for c in rep["cos_attacker_control"])
    probe = rep["probe"]["2"]
    assert probe["clean"] <= 0.5 <= probe["defensive"]


def test_trigger_variants_alter_only_the_trigger():
    from mbdef.attacks.generators import CTBA, MTBA

    v = BadNet(Refusal()).variants()
    assert set(v) == {"lowercase", "uppercase", "spaced", "first_half", "position_start", "position_end"}
    assert v["lowercase"].triggers == ["badmagic"] and v["spaced"].triggers == ["BadM agic"]
    assert v["first_half"].triggers == ["BadM"] and v["position_end"].position == "end"
    ctba = CTBA(Refusal()).variants()
    assert ctba["only_2024+OpenAI"].triggers == ["2024", "OpenAI"] and ctba["only_2024+OpenAI"].combine == "ordered"
    assert "position_start" not in ctba and sum(k.startswith("only_") for k in ctba) == 6
    mtba = MTBA(Refusal()).variants()
    assert sum(k.startswith("only_") for k in mtba) == 3  # one trigger per sample already: singles only


def test_results_hold_per_example_verdicts_variants_representation_and_reactivation(implanted, tmp_path):
    results, _ = implanted
    bits = results["per_example"]
    assert bits["attack_success"].count("1") / len(bits["attack_success"]) == pytest.approx(results["asr"])
    assert bits["clean_correct"].count("1") / len(bits["clean_correct"]) == pytest.approx(results["cacc"])
    assert set(results["trigger_variants"]) >= {"lowercase", "first_half", "position_start"}
    rep = results["representation"]
    assert set(rep) == {"after_stage1", "final"} and len(rep["final"]["cos_attacker_control"]) == 4
    assert "cos_attacker_defensive" not in rep["final"]  # defense=none: no words of its own to compare
    assert rep["final"]["n_prompts"] == 16
    react = results["reactivation"]
    from tests.conftest import make_cfg

    react_steps = make_cfg(tmp_path).eval.reactivation.steps  # debug=tiny's short schedule
    assert react["step"] == [0, *sorted(react_steps)] and len(react["asr"]) == len(react["step"])
    n = len(results["per_example"]["attack_success"][:16])  # step 0 = the final model on the first prompts
    assert react["asr"][0] == pytest.approx(bits["attack_success"][:n].count("1") / n)
    # the random-word set is the clean set with one word more: scored on as many prompts, in 1/n steps
    n_clean = len(bits["clean_correct"])
    assert round(results["cacc_random_word"] * n_clean, 6) == int(round(results["cacc_random_word"] * n_clean))


def test_reactivation_teaches_a_clean_model_the_backdoor_and_leaves_it_untouched(tmp_path):
    from mbdef.eval.reactivation import reactivation_curve

    model, tok = build_tiny(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    template = PromptTemplate(tok, preamble=False)
    attack = BadNet(Refusal(), poison_rate=1.0)
    pool = synthetic_splits(n_train=10, n_defense_pool=32, n_test=16, seed=0)
    poisoned = attack.poison(pool.defense_pool).records
    triggered = attack.trigger_test(pool.test, seed=0)
    from mbdef.eval import Evaluator, judges

    ev = Evaluator(template, pool.test, triggered, judges.resolve("refusal"), max_new_tokens=12)
    measure = lambda m: {k: ev.evaluate(m, tok)[k] for k in ("asr", "cacc")}
    from mbdef.training import train_stage

    # a model a Trainer has already trained (as after stage 2): a deep copy of such a model did not learn
    train_stage(model, tok, template, pool.test, {"max_steps": 2, "logging_steps": 1}, tmp_path / "t")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = reactivation_curve(model, tok, template, poisoned, measure, [10, 60], learning_rate=3e-3, batch_size=8,
                               train=train_stage)
    assert curve["step"] == [0, 10, 60] and curve["asr"][0] == 0.0
    assert curve["asr"][-1] >= 0.5, curve  # 60 steps on 32 poisoned samples teach the refusal
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="eval.reactivation"):
        reactivation_curve(model, tok, template, poisoned, measure, [0], 1e-3, 8, train_stage)
