"""tracking: one W&B run per job (offline unless the user has a key), or nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mbdef.io import build
from mbdef.keys import METRICS
from mbdef.schemas.run import WANDB_MODES

log = logging.getLogger(__name__)


class NullTracker:
    run_dir = None

    def start(self, config: dict, name: str, group: str | None = None, job_type: str | None = None,
              tags: list[str] | None = None) -> None:
        pass

    def log(self, metrics: dict, step: int) -> None:
        pass

    def table(self, key: str, rows: list[dict], step: int) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class WandbTracker(NullTracker):
    """`mode`: `auto` (online when a W&B key is configured, else offline), `online`, `offline`, `disabled`."""

    def __init__(self, project: str = "mbdef", entity: str | None = None, mode: str = "auto", dir: str | None = None,
                 group: str | None = None, tags: list[str] | None = None):
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.mode: '{mode}' is not one of {', '.join(WANDB_MODES)}")
        if mode == "auto":
            mode = "online" if has_wandb_key() else "offline"
        if mode == "online" and not has_wandb_key():
            raise ValueError("logger.mode=online but no W&B key is configured: run `wandb login`, set WANDB_API_KEY, "
                             "or use logger.mode=offline (sync later with `wandb sync`)")
        self.project, self.entity, self.mode, self.dir = project, entity, mode, dir
        self.group, self.tags = group, list(tags or [])
        self.run = None

    @property
    def run_dir(self):
        return Path(self.run.dir).parent if self.run is not None else None

    def start(self, config, name, group=None, job_type=None, tags=None):
        import wandb

        if self.dir:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        # reinit="create_new": each job of a multirun in one process gets its own run.
        self.run = wandb.init(project=self.project, entity=self.entity, mode=self.mode, dir=self.dir, config=config,
                              name=name, group=group or self.group, job_type=job_type, tags=self.tags + list(tags or []),
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

    def log(self, metrics, step):
        if self.run is not None:
            self.run.log(metrics, step=step)

    def table(self, key, rows, step):
        if self.run is not None and rows:
            import wandb

            cols = sorted({k for r in rows for k in r})
            self.run.log({key: wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])}, step=step)

    def summary(self, metrics):
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def finish(self, exit_code=0):
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def start_tracker(logger, config: dict, names: dict, seed: int, group: str | None, enabled: bool = True):
    """The job's tracker (`logger` config; nothing when it is null or on a process that does not write),
    started as one run named attack-defense-seed, tagged with the job's names, grouped by sweep."""
    tracker = build(logger) if enabled and logger else NullTracker()
    tracker.start(config, name=f"{names['attack']}-{names['defense']}-s{seed}", job_type=names["defense"],
                  group=group, tags=[f"{k}:{v}" for k, v in names.items()])
    return tracker


def log_final(tracker, results: dict) -> None:
    """The final metrics on the last step and in the summary, per-layer representation curves and the
    re-activation curve in the summary, sample table."""
    step, final = results["steps"], {k: v for k, v in results.items() if k not in ("stage1", "stage2", "after_stage1")}
    tracker.log({f"final/{k}": v for k, v in final.items() if isinstance(v, (int, float)) and k != "steps"}, step)
    tracker.log({f"final/trigger_variant/{k}": v for k, v in final.get("trigger_variants", {}).items()}, step)
    for stage, rep in results.get("representation", {}).items():  # per-layer curves: x = layer
        for key in ("cos_attacker_defensive", "cos_attacker_control"):
            if key in rep:
                tracker.summary({f"representation/{stage}/{key}/layer_{i}": v for i, v in enumerate(rep[key])})
    tracker.table("final/samples", results.get("samples", []), step)
    tracker.summary({k: results[k] for k in METRICS if results.get(k) is not None})
    if react := results.get("reactivation"):
        tracker.summary({f"reactivation/asr_at_{s}": a for s, a in zip(react["step"], react["asr"])})
