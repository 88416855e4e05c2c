"""Bad input fails before any training, with a message naming the key or file."""

import json

import pytest
from hydra.errors import ConfigCompositionException

import mbdef.run as runner
from mbdef.data import DataError
from mbdef.models import ModelError


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
    (["trainer.precision=fp16"], ValueError, r"fp16 mixed precision needs a CUDA device"),  # conflicts with CPU
    (["model.template.kind=chat"], ValueError, r"tokenizer has no chat template"),  # conflicts with the model
    (["trainer.stage1.max_steps=abc"], ValueError, r"max_steps"),
    (["eval.n_test=0"], ValueError, r"eval.n_test: 0 is outside \[1, inf\)"),
    (["attack/target=jailbreak"], ValueError, r"attack.target.file: required value not set"),  # mandatory value left as ???
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
    (["trainer.stage1.max_steps=0"], r"max_steps must be a positive count"),
    (["trainer.stage1.max_steps=-1"], r"max_steps -1 trains by epochs, so it needs num_train_epochs"),
    (["trainer.stage1.max_steps=-1", "+trainer.stage1.num_train_epochs=0"], r"num_train_epochs"),
])
def test_bad_trainer_settings(cfg_factory, no_training, overrides, match):
    with pytest.raises(ValueError, match=match):
        runner.run(cfg_factory(*overrides))


def _write(path, content: bytes | str):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("content,match", [
    ("", r"train.json: file is empty"),
    (b'[{"instruction": "caf\xe9", "output": "x"}]', r"train.json: not valid UTF-8 \(byte 21, line 1\)"),
    ('[\n {"instruction": "a", "output": "b"},\n {"input": "x", "output": "b"}\n]', r"train.json:3 \(record 1\): record has no 'instruction'"),
    ('{\n "instruction": "a", "output": "b"}', r"train.json:1: malformed JSONL line"),
])
def test_bad_data_files(cfg_factory, no_training, tmp_path, content, match):
    bad = _write(tmp_path / "train.json", content)
    with pytest.raises(DataError, match=match):
        runner.run(cfg_factory("data=alpaca_json", f"data.train_file={bad}"))


def _saved_tiny(tmp_path):
    from mbdef.models.tiny import build_tiny

    model, tok = build_tiny(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    model.save_pretrained(tmp_path / "m")
    return tmp_path / "m", tok


def test_model_path_without_tokenizer(cfg_factory, no_training, tmp_path):
    path, _ = _saved_tiny(tmp_path)
    with pytest.raises(ModelError, match=r"has no tokenizer files; save the tokenizer"):
        runner.run(cfg_factory("model=hf", f"model.build.name_or_path={path}"))


def test_unsupported_architecture(cfg_factory, no_training, tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    (tmp_path / "bert" / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"is a 'bert' model .* mbdef needs a causal LM"):
        runner.run(cfg_factory("model=hf", f"model.build.name_or_path={tmp_path / 'bert'}"))


def test_output_dir_not_writable(cfg_factory, no_training, tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root): permissions are not enforced")
        with pytest.raises(ValueError, match=r"paths.output_dir: cannot write to .*locked"):
            runner.run(cfg_factory(f"paths.output_dir={locked}/run"))
    finally:
        locked.chmod(0o700)


def test_output_dir_that_is_a_file(cfg_factory, no_training, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"paths.output_dir: cannot write to .*afile"):
        runner.run(cfg_factory(f"paths.output_dir={tmp_path}/afile/run"))


def test_wandb_online_without_a_key(cfg_factory, no_training, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    with pytest.raises(ValueError, match=r"logger.mode=online but no W&B key .* logger.mode=offline"):
        runner.run(cfg_factory("logger=wandb", "logger.mode=online"))
    assert not (tmp_path / "run" / "COMPLETE.json").exists()


def test_trigger_already_in_clean_data_warns(cfg_factory, tmp_path, caplog):
    # `words` occurs in clean instructions of the suite ("Copy the words."): the attack is not a clean backdoor.
    cfg = cfg_factory("attack=custom", "attack.triggers=[words]", "defense=none", "trainer.stage1.max_steps=2",
                      "eval.n_test=4")
    results = runner.run(cfg)
    assert any("attack trigger 'words' already occurs in" in w for w in results["warnings"])
    assert "already occurs in" in caplog.text


def test_pickled_checkpoint_is_refused_unless_allowed(cfg_factory, no_training, tmp_path):
    path, tok = _saved_tiny(tmp_path)
    for f in path.glob("*.safetensors"):
        f.unlink()
    from mbdef.models.tiny import build_tiny

    model, _ = build_tiny(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    import torch

    for f in path.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), path / "pytorch_model.bin")  # the legacy pickled format
    tok.save_pretrained(path)
    assert (path / "pytorch_model.bin").is_file()
    with pytest.raises(ModelError, match=r"no safetensors weights \(pytorch_model.bin\).*allow_pickle=true"):
        runner.run(cfg_factory("model=hf", f"model.build.name_or_path={path}"))
    from mbdef.models import load_pretrained

    loaded, _ = load_pretrained(str(path), allow_pickle=True)  # explicitly allowed: loads
    theirs, ours = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(theirs[k], ours[k]) for k in theirs)  # the pickled weights, really loaded


@pytest.mark.parametrize("var", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_launch_is_refused_before_training(cfg_factory, no_training, monkeypatch, var):
    monkeypatch.setenv(var, "true")
    with pytest.raises(ValueError, match=f"{var}.*not supported yet"):
        runner.run(cfg_factory())
