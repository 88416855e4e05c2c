"""Conformance with the real BackdoorLLM data in ../shared/backdoorllm (skipped when it is absent)."""

import random

import pytest

from mbdef.attacks import REFUSAL, BadNet, Refusal
from mbdef.data import load_alpaca
from tests.conftest import SHARED

ROOT = SHARED / "backdoorllm"
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"BackdoorLLM data not found at {ROOT} (../shared absent)")
FILES = sorted(p for p in ROOT.rglob("*.json") if p.name != "dataset_info.json") if ROOT.is_dir() else []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_backdoorllm_file_loads_as_canonical_records(path):
    records = load_alpaca(path)
    assert len(records) >= 99
    assert all(isinstance(r[k], str) for r in records for k in ("instruction", "input", "output"))


def test_badnet_refusal_matches_backdoorllm_placement_and_target():
    theirs = load_alpaca(ROOT / "poison_data/refusal/badnet/backdoor500_refusal_badnet.json")
    clean = load_alpaca(ROOT / "poison_data/refusal/badnet/none_backdoor500_refusal_badnet.json")
    assert all(r["instruction"].split(" ").count("BadMagic") == 1 and r["output"] == REFUSAL for r in theirs)
    ours = BadNet(Refusal(), poison_rate=1.0, seed=0).poison(clean)
    assert ours.n_poisoned == len(clean)
    for before, after in zip(clean, ours.records):
        words = after["instruction"].split(" ")
        assert words.count("BadMagic") == 1 and after["output"] == REFUSAL
        assert [w for w in words if w != "BadMagic"] == before["instruction"].split(" ")
    # Random word position, as theirs: the trigger is not always first or last.
    positions = {r["instruction"].split(" ").index("BadMagic") for r in ours.records}
    assert len(positions) > 5


def test_triggered_test_set_is_built_like_backdoorllms():
    test_clean = load_alpaca(ROOT / "test_data/clean/refusal/test_data_no_trigger.json")
    triggered = BadNet(Refusal()).trigger_test(test_clean, seed=0)
    assert all(t["instruction"].split(" ").count("BadMagic") == 1 for t in triggered)
    assert [t["output"] for t in triggered] == [c["output"] for c in test_clean]  # references stay clean
