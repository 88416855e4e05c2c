"""The commands: `mbdef` (this module), `mbdef-poison` (poison.py), `mbdef-judge` (judge.py).

`mbdef` is light on purpose: the config is checked (a Hydra callback, before the run dir
exists) before the pipeline's imports (torch, transformers, ...) cost their ten seconds, so a bad value
fails at once. The Hydra task stays a module-level function, so parallel launchers can pickle it."""

from __future__ import annotations

import copy
import sys

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

import mbdef
from mbdef import config
from mbdef.schemas import ConfigError, validate


def _refuse(e: ConfigError) -> None:
    print(f"mbdef: error: {e}", file=sys.stderr)
    sys.exit(2)


class ValidateConfig(Callback):
    """conf/hydra/default.yaml: every declared key is checked before any job starts, in a sweep each swept
    value of a key too (a swept group option is checked when its job starts: `run()` validates first)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate(config)
        except ConfigError as e:
            _refuse(e)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate(config)
            for key, value in swept_values(config):
                job = copy.deepcopy(config)
                with open_dict(job):
                    OmegaConf.update(job, key, value, merge=False)
                validate(job)
        except ConfigError as e:
            _refuse(e)


def swept_values(config: DictConfig):
    """(key, value) for every value a sweep gives a config key: command-line sweeps and the preset's
    `hydra.sweeper.params` (for a search's interval, its two ends). Group options (defense=a,b) are left to
    their jobs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    params = config.hydra.sweeper.get("params") or {}
    texts = list(config.hydra.overrides.task) + [f"{k}={v}" for k, v in params.items()]
    for ov in OverridesParser.create().parse_overrides(texts):
        key = ov.key_or_group
        current = OmegaConf.select(config, key, default="<absent>", throw_on_missing=False)
        if not ov.is_sweep_override() or key.startswith("hydra.") or ov.package is not None \
                or isinstance(current, DictConfig) or current == "<absent>":
            continue  # not a sweep, Hydra's own, a group (attack=badnet,vpi) or a new key: its job checks it
        value = ov.value()
        if isinstance(value, IntervalSweep):  # a search's continuous range: both ends must be allowed
            yield from ((key, end) for end in (value.start, value.end))
        else:
            yield from ((key, v) for v in ov.sweep_iterator())


config.register()  # resolvers and schemas, before Hydra composes conf/


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def progress_mode(mode: str) -> str:
    """`auto`: labelled log lines when the launcher runs jobs side by side (their bars would interleave
    into one unreadable line), progress bars otherwise."""
    if mode != "auto":
        return mode
    from hydra.core.hydra_config import HydraConfig

    if in_multirun():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")) and launcher.get("n_jobs") != 1:
            return "lines"
    return "bars"


@hydra.main(version_base="1.3", config_path=str(mbdef.CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    from mbdef.run import run

    try:
        results = run(cfg, progress=progress_mode(cfg.progress), group=cfg.sweep_id if in_multirun() else None)
    except ConfigError as e:  # a swept value: one clear message, no traceback; nothing has been written
        _refuse(e)
    return results.get("asr")


def launch(tool: str, app) -> None:
    """Refuse clear-text secrets on the command line before Hydra writes the overrides anywhere, then run
    the Hydra app (every command's entry point)."""
    from mbdef.io import refuse_literal_secrets

    refuse_literal_secrets(tool, sys.argv[1:])
    app()


def main() -> None:
    launch("mbdef", hydra_main)


if __name__ == "__main__":
    main()
