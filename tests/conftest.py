import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mbdef import CONF_DIR, config

config.register()  # the resolvers and schemas conf/ names, before any test composes it

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU, as CI does
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on 2 cores: one torch thread each
    import torch

    torch.set_num_threads(1)

SHARED = CONF_DIR.parent.parent / "shared"


def base_overrides(tmp_path, debug: bool = True) -> list[str]:
    """Outputs under tmp_path, and debug=tiny unless told otherwise."""
    base = [f"paths.output_dir={tmp_path}/run", f"paths.cache_dir={tmp_path}/cache",
            f"paths.base_cache_dir={tmp_path}/cache_base"]
    return base + (["debug=tiny"] if debug else [])


def make_cfg(tmp_path, *overrides: str, debug: bool = True):
    """Compose the real config (debug=tiny unless told otherwise) with outputs under tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=base_overrides(tmp_path, debug) + list(overrides))


@pytest.fixture
def no_training(monkeypatch):
    """Any call into training means a check came too late."""
    import mbdef.training.pretrain as pretrain_mod
    import mbdef.training.stages as stages

    def forbidden(*a, **k):
        raise AssertionError("training started before the bad input was reported")

    monkeypatch.setattr(stages, "train_stage", forbidden)
    monkeypatch.setattr(pretrain_mod, "train_stage", forbidden)


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *ov, **kw: make_cfg(tmp_path, *ov, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One default debug=tiny MB-Defense job (BadNet), shared by every test that only reads its outputs:
    (run dir, results)."""
    from pathlib import Path

    from mbdef.run import run

    cfg = make_cfg(tmp_path_factory.mktemp("tiny_run"), "logger=none")
    return Path(cfg.paths.output_dir), run(cfg)


def sweep_cmd(log_dir, cache_dir) -> list[str]:
    """A two-job debug sweep as a user types it (defense=none,finetune, W&B offline)."""
    import sys

    return [sys.executable, "-m", "mbdef", "-m", "defense=none,finetune", "debug=tiny", "logger=wandb",
            "sweep_id=idem", "trainer.stage1.max_steps=4", "data.n_test=4", "eval.reactivation.enabled=false",
            "eval.representation.enabled=false", f"paths.log_dir={log_dir}", f"paths.cache_dir={cache_dir}"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The sweep run once through the CLI, shared by the tests that read it or re-run copies of it:
    (log dir, completed process)."""
    import subprocess

    root = tmp_path_factory.mktemp("sweep")
    done = subprocess.run(sweep_cmd(root, root / "cache"), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    return root, done


# Strong poisoning and a short, hot schedule: enough for the tiny model to learn the trigger in seconds.
IMPLANT = ["attack.poison_rate=0.3", "data.n_train=600", "trainer.stage1.max_steps=80",
           "trainer.stage1.learning_rate=2e-3", "trainer.stage1.logging_steps=10", "eval.max_new_tokens=8"]


@pytest.fixture(scope="session")
def implanted(tmp_path_factory):
    from pathlib import Path

    from mbdef.run import run

    tmp = tmp_path_factory.mktemp("e2e")
    cfg = make_cfg(tmp, *IMPLANT, "defense=none", "logger=wandb", "eval.periodic_every=40",
                   "+logger.tags=[test]", "eval.reactivation.enabled=true")
    return run(cfg), Path(cfg.paths.output_dir)
