"""Every declared key is checked against its schema before anything runs (mbdef/schemas).

The main test enumerates the fields from the schemas themselves: each field that declares allowed values
gets a value outside them, in a config that really holds that field, and the run must stop before any
training with a message naming the key. A field added later is enumerated the same way, so it cannot
escape; a numeric field without declared allowed values fails `test_every_numeric_field_declares_its_range`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

import mbdef.run as runner
from mbdef import CONF_DIR
from mbdef.schemas import SCHEMAS, Check, ConfigError, describe, validate
from mbdef.schemas.validate import _hints, _strip_optional, schema_of
from tests.conftest import base_overrides

# Every option of every group, as a user names it; each is composed once and walked for its schemas.
GROUP_DIRS = {"data": "data", "model": "model", "attack": "attack", "attack/target": "attack/target",
              "defense": "defense", "eval/judge": "eval/judge", "logger": "logger", "trainer": "trainer",
              "experiment": "experiment", "hparams_search": "hparams_search"}
PROBES = [()] + [(f"{group}={p.stem}",) for group, folder in GROUP_DIRS.items()
                 for p in sorted((CONF_DIR / folder).glob("*.yaml"))]


def _walk(node: DictConfig, schema: type, prefix: str):
    """(dotted key, schema, field, present) for every declared field under `node`, as validate() sees them."""
    hints = _hints(schema)
    for f in dataclasses.fields(schema):
        present = f.name in node
        yield prefix + f.name, schema, f, present
        if not present or OmegaConf.is_missing(node, f.name):
            continue
        try:
            value = node[f.name]
        except InterpolationResolutionError:
            continue
        if isinstance(value, DictConfig) and (sub := schema_of(value, hints[f.name])) is not None:
            yield from _walk(value, sub, f"{prefix}{f.name}.")


def _compose_probes(tmp_path, probes=PROBES, debug: bool = True) -> dict:
    """The probes composed in one Hydra context."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return {p: compose("config", overrides=base_overrides(tmp_path, debug) + list(p)) for p in probes}


def _field_sites(probes: dict) -> dict:
    """(schema, field name) -> (probe, dotted key, present) for every checked field, preferring a config in
    which the key is present."""
    root = SCHEMAS["run"]["run"]
    sites = {}
    for probe, cfg in probes.items():
        for key, schema, f, present in _walk(cfg, root, ""):
            if f.metadata.get("check") is None:
                continue
            known = sites.get((schema, f.name))
            if known is None or (present and not known[2]):
                sites[(schema, f.name)] = (probe, key, present)
    return sites


def _checked_fields() -> set:
    return {(cls, f.name) for group in SCHEMAS.values() for cls in group.values()
            for f in dataclasses.fields(cls) if f.metadata.get("check") is not None}


def _bad_value(f: dataclasses.Field, hint):
    value = f.metadata["check"].outside()
    return [value] if typing.get_origin(_strip_optional(hint)) in (list, typing.List) else value


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    return _compose_probes(tmp_path_factory.mktemp("probe"))


@pytest.fixture(scope="module")
def sites(probes):
    return _field_sites(probes)


def test_every_checked_field_of_every_schema_is_reached_by_some_config_option(sites):
    """A schema field no option of conf/ holds would go untested below: the probes must reach them all."""
    missing = sorted(f"{cls.__name__}.{name}" for cls, name in _checked_fields() - set(sites))
    assert not missing, f"no config option holds these checked fields: {missing}"


def test_every_out_of_range_value_stops_the_run_before_anything_naming_the_key(probes, sites, no_training):
    """Each value is set into the probe's composed config as an override would set it (typed groups keep their
    types; a key an option leaves out is added), then `run()` must refuse it first, naming only that key."""
    assert len(sites) >= 60  # every group's numeric and enumerated keys (about 80 today)
    for (schema, name), (probe, key, present) in sorted(sites.items(), key=lambda s: s[1][1]):
        f = next(f for f in dataclasses.fields(schema) if f.name == name)
        cfg, bad = copy.deepcopy(probes[probe]), _bad_value(f, _hints(schema)[name])
        with open_dict(cfg):
            OmegaConf.update(cfg, key, bad, merge=False, force_add=not present)
        with pytest.raises(ConfigError) as err:
            runner.run(cfg)
        message = str(err.value)
        assert re.search(rf"(^|\n  ){re.escape(key)}: ", message), (key, bad, message)
        assert f.metadata["check"].describe() in message, (key, message)
        assert not Path(cfg.paths.output_dir).exists(), f"{key}: the run dir was created before the check"


def test_every_numeric_field_declares_its_range():
    """`Every numeric key is checked`: an int or float field (or a list of them) without allowed values fails."""
    unchecked = []
    for group in SCHEMAS.values():
        for cls in group.values():
            for f in dataclasses.fields(cls):
                tp = _strip_optional(_hints(cls)[f.name])
                if typing.get_origin(tp) in (list, typing.List):
                    tp = typing.get_args(tp)[0]
                if tp in (int, float) and f.metadata.get("check") is None:
                    unchecked.append(f"{cls.__name__}.{f.name}")
    assert not unchecked, unchecked


@pytest.mark.parametrize("check,value,ok", [
    (Check(ge=1), 1, True), (Check(ge=1), 0, False), (Check(gt=0), 0, False), (Check(gt=0), 1e-9, True),
    (Check(ge=0, le=1), 1, True), (Check(ge=0, le=1), 1.0001, False), (Check(ge=0, lt=1), 1, False),
    (Check(ge=0), True, False),            # a bool is not a count
    (Check(ge=0), float("nan"), False),
    (Check(ge=0), "3", False),
    (Check(ge=1), [1, 2, 0], False),       # a list is checked item by item
    (Check(one_of=("a", "b")), "b", True), (Check(one_of=("a", "b")), "c", False),
    (Check(one_of=("a", "b"), or_list=True), ["x", "y"], True),
    (Check(ge=1), None, True),             # None is the Optional type's business
])
def test_check_semantics(check, value, ok):
    assert (check.violation(value) is None) is ok
    if not ok:
        assert check.violation(check.outside()) is not None  # what the enumeration test gives is refused


def test_interval_notation():
    assert Check(ge=1).describe() == "[1, inf)"
    assert Check(gt=0, le=1).describe() == "(0, 1]"
    assert Check(ge=0, lt=1).describe() == "[0, 1)"
    assert Check(one_of=("x", "y")).describe() == "one of x | y"


@pytest.mark.parametrize("overrides,message", [
    (["data.min_words=5"], r"data.max_words: 4 is below min_words \(5\)"),
    (["model.build.num_heads=5"], r"model.build.hidden_size: 192 is not divisible by num_heads \(5\)"),
    (["+model.build.not_a_key=1"], r"model.build.not_a_key: unknown key"),
    (["+data.n_tset=5"], r"data.n_tset: unknown key"),
    (["+trainer.stage2.weight_decay=-0.1"], r"trainer.stage2.weight_decay: -0.1 is outside \[0, inf\)"),
    (["data.n_train=abc"], r"data.n_train: 'abc' is not of type int"),
    (["seed=1.5"], r"seed: 1.5 is not of type int"),
])
def test_relations_types_and_unknown_keys(cfg_factory, no_training, overrides, message):
    with pytest.raises(ConfigError, match=message):
        runner.run(cfg_factory(*overrides))


def test_every_problem_is_reported_at_once(cfg_factory):
    with pytest.raises(ConfigError) as err:
        validate(cfg_factory("eval.batch_size=0", "trainer.stage2.learning_rate=-1", "attack.position=middle"))
    text = str(err.value)
    assert text.startswith("3 config values are not allowed")
    for shown in ("eval.batch_size: 0", "trainer.stage2.learning_rate: -1", "attack.position: 'middle'"):
        assert shown in text


def test_every_option_and_preset_passes_as_shipped(probes, tmp_path):
    """The shipped configs are valid, and the presets unshrunk too (??? values are the user's to set, and
    skipped)."""
    presets = [p for p in PROBES if p and p[0].startswith("experiment=")]
    for cfg in [*probes.values(), *_compose_probes(tmp_path, presets, debug=False).values()]:
        validate(cfg)


def test_describe_shows_the_allowed_values():
    assert "batch_size: prompts per generation batch; allowed: [1, inf)" in describe("eval/eval").splitlines()
    assert "weight_decay: AdamW weight decay; allowed: [0, inf) (may be absent)" in describe("trainer/stage")


def _cli(tmp_path, *args):
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "mbdef", *args, f"paths.log_dir={tmp_path}/outputs"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def test_cli_refuses_a_bad_value_before_hydra_makes_a_run_dir(tmp_path):
    done = _cli(tmp_path, "debug=tiny", "eval.batch_size=0")
    assert done.returncode == 2
    assert "mbdef: error: eval.batch_size: 0 is outside [1, inf)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_refuses_a_bad_swept_value_before_the_first_job(tmp_path):
    """The good value comes first: without the sweep check its job would train before the bad one failed."""
    done = _cli(tmp_path, "-m", "debug=tiny", "logger=none", "defense.n_triggers=1,0")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "defense.n_triggers: 0 is outside [1, inf)" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_refuses_a_search_interval_that_leaves_the_allowed_range(tmp_path):
    done = _cli(tmp_path, "hparams_search=mb_defense", "debug=tiny", "defense.rate_per_trigger=interval(0.01, 1.5)")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "defense.rate_per_trigger: 1.5 is outside (0, 1]" in done.stderr
    assert not (tmp_path / "outputs").exists()
