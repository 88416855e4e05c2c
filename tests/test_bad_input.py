"""Bad input fails before any training, with a message naming the key or file."""

import json

import pytest
from hydra.errors import ConfigCompositionException

import mbdef.run as runner
from mbdef.data import DataError
from mbdef.models import ModelError


@pytest.fixture
def no_training(monkeypatch):
    """Any call into training means validation came too late."""
    def forbidden(*a, **k):
        raise AssertionError("training started before the bad input was reported")

    monkeypatch.setattr(runner, "train_stage", forbidden)


@pytest.mark.parametrize("overrides,error,match", [
    (["attack.poison_rate=1.5"], ValueError, r"attack.poison_rate: 1.5 is outside \[0, 1\]"),
    (["attack.poison_rate=-0.2"], ValueError, r"attack.poison_rate"),
    (["defense=finetune", "defense.clean_size=100000"], ValueError, r"defense.clean_size: 100000 exceeds"),
    (["defense.clean_size=100000"], ValueError, r"defense.clean_size"),
    (["defense.n_triggers=0"], ValueError, r"defense.n_triggers"),
    (["model=hf", "model.build.name_or_path=/nonexistent/model"], ModelError, r"does not exist"),
    (["data=alpaca_json", "data.train_file=/nonexistent/train.json"], DataError, r"train.json: data file not found"),
    (["eval.judge=nonsense"], ValueError, r"unknown judge 'nonsense'"),
    (["attack.poison_count=100000"], ValueError, r"attack.poison_count: 100000 is larger than the 400"),
    (["attack=custom", "attack.triggers=[ok, '']"], ValueError, r"empty trigger"),
    (["attack=mtba", "attack.combine=several"], ValueError, r"attack.combine"),
    (["attack/target=jailbreak", "attack.target.file=/nonexistent/harm.json"], DataError, r"harm.json: data file not found"),
    (["eval/judge=regex", "eval.judge.pattern='(oops'"], ValueError, r"invalid regular expression"),
    (["attack.position=middle"], ValueError, r"attack.position"),
    (["trainer.precision=fp8"], ValueError, r"trainer.precision"),
])
def test_bad_input_is_reported_before_training(cfg_factory, no_training, tmp_path, overrides, error, match):
    cfg = cfg_factory(*overrides)
    with pytest.raises(error, match=match):
        runner.run(cfg)
    assert not list(tmp_path.rglob("results.json"))


def test_malformed_data_file_names_the_line(cfg_factory, no_training, tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n{broken\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: malformed"):
        runner.run(cfg_factory("data=alpaca_json", f"data.train_file={bad}"))


@pytest.mark.parametrize("override", ["attack=nope", "defense=nope", "model=nope", "data=nope", "attack/target=nope",
                                      "eval/judge=nope"])
def test_unknown_group_option(cfg_factory, override):
    with pytest.raises(ConfigCompositionException, match="nope"):
        cfg_factory(override)


@pytest.mark.parametrize("overrides,match", [
    (["trainer.stage2.max_steps=-5", "defense=finetune"], r"max_steps"),
    (["+trainer.stage1.not_a_field=1"], r"trainer stage config: .*not_a_field"),
])
def test_bad_trainer_settings(cfg_factory, no_training, overrides, match):
    with pytest.raises(ValueError, match=match):
        runner.run(cfg_factory(*overrides))
