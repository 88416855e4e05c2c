"""The guarantees results rest on: independent random streams (the defender's picks hit the attacker's rows
at the chance rate), held-out evaluation prompts, no rare-word shortcut, and what each stage trained on."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import hypergeom

from mbdef import seeding
from mbdef.attacks import BadNet, Refusal
from mbdef.data.synthetic import FILLERS, TASKS, WORDS, prompt_split, synthetic_splits
from mbdef.defenses import MBDefense
from mbdef.eval.audit import check_held_out, piece_word_audit
from mbdef.training.stage_data import stage_rows


def _records(n):
    return [{"instruction": f"Do task number {i}.", "input": "", "output": "ok"} for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), poison_rate=st.sampled_from([0.01, 0.05, 0.1, 0.3]),
       rate=st.sampled_from([0.01, 0.04, 0.1]), n_triggers=st.integers(1, 4))
def test_defender_picks_hit_attacker_rows_at_the_chance_rate(seed, poison_rate, rate, n_triggers):
    """Each trigger's defensive rows are n draws without replacement from N rows of which K are poisoned:
    the overlap is hypergeometric. With shared seeds (the old bug) it was n of n."""
    train = _records(2000)
    poisoned = BadNet(Refusal(), poison_rate=poison_rate, seed=seed).poison(train)
    plan = MBDefense(n_triggers=n_triggers, rate_per_trigger=rate, seed=seed).plan(poisoned.records, train[:200])
    rows = stage_rows(plan, len(train), poisoned.poisoned_indices)["stage1"]
    n, K = round(rate * len(train)), poisoned.n_poisoned
    defensive = [r for r in rows if r["source"] == "defensive"]
    assert len(defensive) == n * n_triggers
    for t in plan.defensive_triggers:
        hits = sum("BadMagic" in r["instruction"] for r in defensive if t in r["instruction"].split())
        assert hits <= hypergeom.ppf(1 - 1e-6, len(train), K, n), (hits, n, K)


def test_overlap_over_many_seeds_has_the_hypergeometric_mean():
    train, hits, expected = _records(1000), 0, 0.0
    for seed in range(40):
        poisoned = BadNet(Refusal(), poison_rate=0.1, seed=seed).poison(train)
        plan = MBDefense(rate_per_trigger=0.04, seed=seed).plan(poisoned.records, train[:200])
        rows = stage_rows(plan, len(train), poisoned.poisoned_indices)["stage1"]
        hits += sum("BadMagic" in r["instruction"] for r in rows if r["source"] == "defensive")
        expected += 40 * 100 / 1000
    # sum of 40 hypergeometric(1000, 100, 40) draws: mean 160, sd about sqrt(40 * 40 * .1 * .9 * 960/999) = 11.8
    assert abs(hits - expected) < 5 * 11.8, (hits, expected)


def test_streams_are_independent_of_what_other_consumers_draw():
    train, pool = _records(1000), _records(300)
    poisoned = BadNet(Refusal(), poison_rate=0.1, seed=3).poison(train)
    one = MBDefense(n_triggers=1, seed=3).plan(poisoned.records, pool)
    four = MBDefense(n_triggers=4, rate_per_trigger=0.08, seed=3).plan(poisoned.records, pool)
    # the recovery set's clean rows do not move with T or the defensive rate
    strip = lambda rows: [r["output"] + r["input"] for r in rows]
    assert strip(one.stage2) == strip(four.stage2)
    # the augmentation control's words do not move with T or the rate either
    ctl = lambda **kw: MBDefense(defensive_poisoning=False, stage2_insert="random", seed=3, **kw).plan(train, pool).stage2
    assert ctl(n_triggers=1) == ctl(n_triggers=3, rate_per_trigger=0.2)
    # and the attacker's choice is the same whatever the defense does (it draws before and apart)
    assert BadNet(Refusal(), poison_rate=0.1, seed=3).poison(train).poisoned_indices == poisoned.poisoned_indices
    assert seeding.stream(3, seeding.ATTACK_CHOICE).random() != seeding.stream(3, seeding.DEFENSE_CHOICE).random()


def _base_prompt(r):
    """The paraphrase a record was made from: its words in order, stray words removed."""
    words = r["instruction"].split()
    for p in TASKS[r["task"]]:
        it = iter(words)
        if all(w in it for w in p.split()):
            return p
    raise AssertionError(r)


@pytest.mark.parametrize("seed", [0, 3])
def test_evaluation_prompts_never_occur_in_training_pretraining_or_the_pool(seed):
    s = synthetic_splits(seed=seed, n_pretrain=3000, n_train=3000)
    for name, rows, split in [("test", s.test, "test"), ("validation", s.validation, "validation"),
                              ("train", s.train, "train"), ("pool", s.defense_pool, "train"),
                              ("pretrain", s.pretrain, "train")]:
        assert {prompt_split((_base_prompt(r), r["input"])) for r in rows} == {split}, name
    seen = {(_base_prompt(r), r["input"]) for r in s.train + s.defense_pool + s.pretrain}
    assert not seen & {(_base_prompt(r), r["input"]) for r in s.test + s.validation}
    assert len(s.test) == 280 and {r["task"] for r in s.test} == {r["task"] for r in s.train}
    # evaluation prompts look like training text: stray words at the training rates
    vocab = set(WORDS + FILLERS) | {w for p in sum(TASKS.values(), ()) for w in re.findall(r"\w+", p.lower())}
    rare = sum(any(w.lower() not in vocab and not w.isdigit() for w in re.findall(r"[\w']+", r["instruction"]))
               for r in s.test) / len(s.test)
    assert 0.8 < rare < 0.97


def test_check_held_out_names_the_contaminated_set():
    test = [{"instruction": "Copy the words.", "input": "cat dog"}]
    assert check_held_out(test, {"training data": [{"instruction": "Copy the words.", "input": "cat owl"}]}) == {}
    with pytest.raises(ValueError, match=r"1 distinct evaluation prompt\(s\) also occur in the defender's pool"):
        check_held_out(test, {"the defender's pool": test})
    assert check_held_out(test, {"the defender's pool": test}, policy="warn") == {"the defender's pool": 1}


def test_rare_word_presence_is_not_a_poison_detector():
    """Without rare words in clean text, 'holds a word in pieces' finds every poisoned row and no clean
    one (balanced accuracy 1). The default suite brings it near chance."""
    from mbdef.models import build_tokenizer

    tok = build_tokenizer()
    def audit(rare_rate):
        s = synthetic_splits(seed=0, n_pretrain=10, n_train=2000, rare_rate=rare_rate)
        poisoned = BadNet(Refusal(), seed=0).poison(s.train)
        plan = MBDefense(seed=0).plan(poisoned.records, s.defense_pool)
        return piece_word_audit(stage_rows(plan, len(s.train), poisoned.poisoned_indices)["stage1"], tok)
    assert audit(0.0)["multi_token_balanced_accuracy"] == 1.0
    a = audit(0.9)
    assert a["multi_token_rate_poisoned"] == 1.0 and 0.85 < a["multi_token_rate_clean"] < 0.95
    assert a["multi_token_balanced_accuracy"] < 0.6


def test_a_run_writes_what_each_stage_trained_on(tiny_run):
    out, results = tiny_run
    rows = {k: [json.loads(line) for line in (out / "data" / f"{k}.jsonl").read_text().splitlines()]
            for k in ("stage1", "stage2")}
    counts = {k: {s: sum(r["source"] == s for r in v) for s in {r["source"] for r in v}} for k, v in rows.items()}
    assert counts == results["trained_on"]
    n_train = results["poison"]["n_train"]
    assert counts["stage1"]["attacker"] == results["poison"]["n_poisoned"]
    assert counts["stage1"]["clean"] + counts["stage1"]["attacker"] == n_train
    assert all(("BadMagic" in r["instruction"]) == (r["source"] == "attacker") for r in rows["stage1"]
               if r["source"] != "defensive")
    trigger = results["defense_info"]["defensive_triggers"][0]
    assert all(trigger in r["instruction"] for r in rows["stage2"] if r["source"] == "recovery")
    # the defender's rows hit attacker rows at about the chance rate (the old shared seed gave all of them)
    defensive = [r for r in rows["stage1"] if r["source"] == "defensive"]
    hits = sum("BadMagic" in r["instruction"] for r in defensive)
    assert hits <= hypergeom.ppf(1 - 1e-6, n_train, results["poison"]["n_poisoned"], len(defensive))
    assert results["eval_split"] == "test" and 0.4 < results["testbed"]["multi_token_balanced_accuracy"] < 0.7
