"""results.json follows one versioned schema."""

import json

import pytest

from mbdef.results import SCHEMA_VERSION, RunResults


def test_a_run_writes_every_fixed_key_with_its_type_and_the_schema_version(tiny_run):
    out_dir, results = tiny_run
    saved = json.loads((out_dir / "results.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION
    again = RunResults.from_parts(saved)  # every fixed key is there; the rest are measurements
    assert again.to_dict() == saved
    assert isinstance(saved["asr"], float) and isinstance(saved["steps"], int) and saved["stage2"]["steps"] > 0
    assert {"per_example", "samples", "timings"} <= set(saved)


def test_missing_fixed_keys_and_clashing_measurements_are_errors():
    with pytest.raises(ValueError, match="missing"):
        RunResults.from_parts({"attack": "badnet"})
    parts = json.loads(json.dumps(_minimal()))
    r = RunResults.from_parts(parts)
    r.measurements["asr"] = 0.5
    with pytest.raises(ValueError, match="overwrite fixed keys"):
        r.to_dict()


def test_a_results_file_from_a_newer_mbdef_is_refused_and_an_unversioned_one_read_as_version_1():
    with pytest.raises(ValueError, match="newer than this mbdef reads"):
        RunResults.check({"schema_version": SCHEMA_VERSION + 1}, "x/results.json")
    assert RunResults.check({"asr": 0.1}) == {"asr": 0.1}


def _minimal() -> dict:
    fixed = {"attack": "a", "defense": "d", "model": "m", "data": "x", "seed": 0, "eval_split": "test",
             "config_hash": "h", "asr": None, "cacc": 1.0, "false_trigger_rate": 0.0, "n_clean": 1, "steps": 1,
             "stage1": {}, "after_stage1": {}, "timings": {}, "poison": {}, "trained_on": {}, "defense_info": {},
             "testbed": {}, "judge": "j", "template": {}, "labels": {}, "security": {}, "warnings": [],
             "resumed": False, "n_params": 1, "versions": {}, "device": "cpu", "output_dir": "o", "world_size": 1}
    return fixed
