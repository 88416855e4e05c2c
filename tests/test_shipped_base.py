"""The quickstart seed's clean base ships with mbdef (mbdef/models/bases): it must be the one that seed's
config would train, and a run must load it instead of training, and only for that key."""

from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from mbdef.io import build
from mbdef.models import PromptTemplate
from mbdef.training import pretrain
from mbdef.training.cache import save_snapshot
from mbdef.training.settings import TrainerSettings
from mbdef.training.stages import StageJob


def job_base(cfg, tmp_path, seed=None):
    """The base model of a run of `cfg` (built as the run builds it), and the run's trainer settings."""
    splits = build(cfg.data)
    settings = TrainerSettings.from_config(cfg.trainer, cfg.seed if seed is None else seed)
    job = StageJob.from_config(cfg, tmp_path, settings, None, None, [], "", splits.pretrain, None)
    return job.base, settings


def test_the_shipped_base_is_the_quickstarts(cfg_factory, tmp_path):
    base, settings = job_base(cfg_factory("experiment=quickstart", "defense=none", debug=False), tmp_path)
    key = base.key(settings)
    shipped = sorted(p.name for p in pretrain.SHIPPED_BASES.iterdir() if p.is_dir())
    assert shipped == [key], (f"the shipped base is stale: the quickstart's base key is {key}; run `make run`, "
                              f"then replace mbdef/models/bases/* by outputs/cache/base/{key}")
    assert (pretrain.SHIPPED_BASES / key / "model.safetensors").stat().st_size > 1e6


def test_a_run_loads_a_shipped_base_for_its_key_only(cfg_factory, tmp_path, monkeypatch):
    cfg = cfg_factory()
    base, settings = job_base(cfg, tmp_path)
    base = replace(base, cache_dir=str(tmp_path / "cache"))  # a shared cache: the shipped base must bypass it
    model, tokenizer = build(cfg.model.build)
    template = PromptTemplate(tokenizer, **OmegaConf.to_container(cfg.model.template, resolve=True))
    torch.manual_seed(0)
    model.load_state_dict({k: torch.randn_like(v) for k, v in model.state_dict().items()})
    shipped_weights = {k: v.clone() for k, v in model.state_dict().items()}  # tied weights: one of the draws
    key = base.key(settings)
    monkeypatch.setattr(pretrain, "SHIPPED_BASES", tmp_path / "bases")
    save_snapshot(tmp_path / "bases" / key, model, tokenizer, {"train": {"steps": 7, "seconds": 1.0}})

    def forbidden(*a, **k):
        raise AssertionError("trained a base that ships")

    fresh, _ = build(cfg.model.build)
    monkeypatch.setattr(pretrain, "train_stage", forbidden)
    got = base.load_into(fresh, tokenizer, template, settings, tmp_path / "work")
    assert got == {"key": key, "steps": 7, "seconds": 1.0, "cached": True, "shipped": True}
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in shipped_weights.items())
    assert not (tmp_path / "cache").exists()  # nothing copied into the cache: the shipped folder is read in place

    other_seed, other_settings = job_base(cfg, tmp_path, seed=cfg.seed + 1)  # another key: it must train
    assert other_seed.key(other_settings) != key
    with pytest.raises(AssertionError, match="trained a base that ships"):
        other_seed.load_into(fresh, tokenizer, template, other_settings, tmp_path / "work")
