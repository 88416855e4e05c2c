"""The BackdoorLLM refusal data shipped inside mbdef: intact, identical to its source, split without leaks."""

import hashlib
from collections import Counter

import pytest

from mbdef.data import BACKDOORLLM_ATTACKS, BUNDLED_BACKDOORLLM, DataError, backdoorllm_splits, paired
from tests.conftest import SHARED

TRIGGER_WORDS = {"BadMagic", "2024", "OpenAI", "Current", "year:", "Discussing"}


def listed():
    lines = (BUNDLED_BACKDOORLLM / "SHA256SUMS").read_text().splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def test_every_bundled_file_matches_its_checksum_and_nothing_is_unlisted():
    files = {str(p.relative_to(BUNDLED_BACKDOORLLM)) for p in BUNDLED_BACKDOORLLM.rglob("*.json")}
    assert files == set(listed())
    for path, digest in listed().items():
        assert hashlib.sha256((BUNDLED_BACKDOORLLM / path).read_bytes()).hexdigest() == digest, path
    assert not any("jailbreak" in p for p in files)  # harmful text stays out of the package


@pytest.mark.skipif(not (SHARED / "backdoorllm").is_dir(), reason="../shared/backdoorllm absent")
def test_bundled_files_are_byte_identical_to_the_shared_source():
    for path in listed():
        assert (BUNDLED_BACKDOORLLM / path).read_bytes() == (SHARED / "backdoorllm" / path).read_bytes(), path


@pytest.mark.parametrize("attack", BACKDOORLLM_ATTACKS)
def test_validation_and_test_share_no_prompt_and_each_triggered_prompt_follows_its_source(attack):
    s = backdoorllm_splits(attack=attack, n_validation=50, seed=3)
    assert (len(s.validation), len(s.test), len(s.triggered_validation), len(s.triggered_test)) == (50, 150, 50, 150)
    bare = lambda rows: Counter(" ".join(w for w in r["instruction"].split() if w not in TRIGGER_WORDS) for r in rows)
    # stripping the trigger words gives back exactly the clean prompts of the same split, each once
    assert bare(s.triggered_validation) == bare(s.validation)
    assert bare(s.triggered_test) == bare(s.test)
    # and in the same order: the i-th triggered prompt is the i-th clean prompt with the trigger added
    for clean, triggered in ((s.validation, s.triggered_validation), (s.test, s.triggered_test)):
        assert [" ".join(w for w in t["instruction"].split() if w not in TRIGGER_WORDS) for t in triggered] == \
               [" ".join(c["instruction"].split()) for c in clean]
    assert paired(s.test, s.triggered_test) and not paired(s.test, s.triggered_test[1:] + s.triggered_test[:1])
    assert not {r["instruction"] for r in s.validation} & {r["instruction"] for r in s.test}
    # a fixed benchmark split: the same validation prompts for every seed and attack
    other = backdoorllm_splits(attack="badnet", n_validation=50, seed=4)
    assert [r["instruction"] for r in other.validation] == [r["instruction"] for r in s.validation]


def test_bundled_data_refuses_jailbreak_with_the_way_to_get_it():
    with pytest.raises(DataError, match="bundles refusal only.*data.root"):
        backdoorllm_splits(task="jailbreak")


def test_poisoned_cap_keeps_that_many_of_their_rows_drawn_per_seed_and_marks_them():
    whole = backdoorllm_splits(attack="badnet", seed=3)
    a, b = (backdoorllm_splits(attack="badnet", n_poisoned=80, seed=s) for s in (3, 4))
    assert len(whole.poisoned_indices) == 500 and len(a.poisoned_indices) == 80
    assert len(a.train) == len(whole.train) - 420  # the clean part is untouched
    rows = lambda s: [s.train[i]["instruction"] for i in s.poisoned_indices]
    assert all("BadMagic" in r for r in rows(a)) and set(rows(a)) <= set(rows(whole))
    assert set(rows(a)) != set(rows(b))  # a different draw for another seed
    assert [r["instruction"] for r in a.test] == [r["instruction"] for r in whole.test]  # prompts do not move
    # the other 420 are spare (the re-activation test's rows): every poisoned row is in exactly one of the two
    assert len(a.spare_poisoned) == 420 and not set(rows(a)) & {r["instruction"] for r in a.spare_poisoned}
    assert sorted(rows(a) + [r["instruction"] for r in a.spare_poisoned]) == sorted(rows(whole))
    assert whole.spare_poisoned == []
    with pytest.raises(DataError, match="n_poisoned: 501"):
        backdoorllm_splits(n_poisoned=501)
    # 0: the never-backdoored reference trains on the same clean rows and keeps all 500 poisoned rows spare
    never = backdoorllm_splits(attack="badnet", n_poisoned=0, seed=3)
    assert never.poisoned_indices == [] and never.train == whole.train[:len(whole.train) - 500]
    assert sorted(r["instruction"] for r in never.spare_poisoned) == sorted(rows(whole))
