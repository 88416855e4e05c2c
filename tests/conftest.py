import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mbdef import CONF_DIR

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on CPU, as CI does
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED = CONF_DIR.parent.parent / "shared"


def make_cfg(tmp_path, *overrides: str, debug: bool = True):
    """Compose the real config (debug=tiny unless told otherwise) with outputs under tmp_path."""
    GlobalHydra.instance().clear()
    base = [f"paths.output_dir={tmp_path}/run", f"paths.cache_dir={tmp_path}/cache"]
    if debug:
        base.append("debug=tiny")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=base + list(overrides))


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *ov, **kw: make_cfg(tmp_path, *ov, **kw)
