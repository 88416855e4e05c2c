"""A Hydra sweeper on current Optuna, in hydra-optuna-sweeper's config shape, for mbdef's searches.

hydra-optuna-sweeper 1.3.0 pins optuna<3, whose storage fails with SQLAlchemy 2 (checked: optuna 2.10.1 with
SQLAlchemy 2.1 raises in create_study on sqlite), so this is a small sweeper of our own with the same keys:
`params` in Hydra's override grammar (`choice(1, 2, 4)`, `interval(0.01, 0.2)`, `tag(log, interval(...))`,
`range(1, 9)`), `sampler`, `direction`, `storage`, `study_name`, `n_trials`, `n_jobs`. Added for mbdef:

- `objective`: a key of each job's results.json (dotted for nested keys); `constraints`: bounds on other
  keys, a number for a ceiling or {min: x} / {max: x} (a trial is feasible when each mean is inside its
  bound; each trial carries its excess over every bound as an Optuna constraint (`Trial.set_constraint`),
  which constraint-aware samplers such as TPE read);
- `seeds`: each trial runs one job per seed and scores the mean, because one seed of a noisy trial misleads;
- `grid: true`: Optuna's GridSampler over the `choice` params, every point once (better than a model-based
  sampler when a handful of noisy trials is all the budget allows: nothing to model, and every cell is seen);
- resumption: the study lives in `storage` (sqlite under outputs/ by default); a re-run goes on to `n_trials`
  complete trials, asks again the trials a stop interrupted (the same params give the same job dirs, which
  mbdef resumes or skips) and never redoes a finished trial.

Each trial's record (params, per-seed values, mean, feasibility) is a user attribute of the study, and
`search.yaml` in the sweep dir lists every trial and the best feasible one after each batch.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

log = logging.getLogger("mbdef")


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """An Optuna distribution from a sweep override (choice, range, interval; `tag(log, ...)` for log scale)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        if not all(float(x).is_integer() for x in (value.start, value.stop, value.step)):
            return optuna.distributions.CategoricalDistribution(list(override.sweep_iterator()))
        return optuna.distributions.IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"hydra.sweeper.params.{override.get_key_element()}: {override.input_line} is not a choice, "
                     f"range or interval")


def excess_over(value: float, bound) -> float:
    """How far `value` is outside its bound (<= 0: inside): a number is a ceiling, {max: x} / {min: x} either."""
    if isinstance(bound, (int, float)):
        return value - bound
    if not bound or set(bound) - {"min", "max"}:
        raise ValueError(f"hydra.sweeper.constraints: a bound is a number or {{min: x}} / {{max: x}}, not {bound}")
    return max(([value - bound["max"]] if "max" in bound else []) + ([bound["min"] - value] if "min" in bound else []))


def metric(results: dict, key: str) -> Any:
    for part in key.split("."):
        results = results[part]
    return results


class OptunaSweeper(Sweeper):
    def __init__(self, params: dict | None = None, objective: str = "asr", direction: str = "minimize",
                 constraints: dict | None = None, seeds: list[int] | None = None, n_trials: int = 20,
                 n_jobs: int = 1, storage: str | None = None, study_name: str | None = None,
                 sampler: dict | None = None, grid: bool = False) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction: '{direction}' is not one of minimize, maximize")
        if n_trials < 1 or n_jobs < 1:
            raise ValueError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be at least 1")
        plain = lambda x: OmegaConf.to_container(x, resolve=True) if isinstance(x, (DictConfig, ListConfig)) else x
        self.params, self.objective, self.direction = dict(plain(params) or {}), objective, direction
        self.constraints, self.seeds = dict(plain(constraints) or {}), list(plain(seeds)) if seeds else None
        for bound in self.constraints.values():
            excess_over(0.0, bound)  # a malformed bound fails now, before any trial
        self.n_trials, self.n_jobs, self.storage, self.study_name = n_trials, n_jobs, storage, study_name
        self.sampler_cfg, self.grid = sampler, grid

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # -- the search space and the study ------------------------------------------------------------------
    def _space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        space, fixed = {}, []
        for o in overrides:
            key = o.get_key_element()
            if o.is_sweep_override():
                space[key] = distribution(o)
            else:
                fixed.append(f"{key}={o.get_value_element_as_str()}")
        if self.seeds and "seed" in space:
            raise ValueError("hydra.sweeper.seeds: the seed is set per trial by `seeds`; do not search over it")
        return space, fixed

    def _study(self, space: dict) -> optuna.Study:
        if self.storage and self.storage.startswith("sqlite:///"):
            Path(self.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction=self.direction,
                                    load_if_exists=True)
        if (sampler := self._sampler(space, len(study.trials))) is not None:
            study.sampler = sampler
        return study

    def _sampler(self, space: dict, n_before: int) -> optuna.samplers.BaseSampler | None:
        """The configured sampler; its seed moves on by the trials already in the study, so a resumed search
        does not draw its first points again."""
        if self.grid:
            if not all(isinstance(d, optuna.distributions.CategoricalDistribution) for d in space.values()):
                raise ValueError("hydra.sweeper.grid: every param must be a choice(...) for a grid")
            return optuna.samplers.GridSampler({k: list(d.choices) for k, d in space.items()}, seed=n_before)
        if not self.sampler_cfg:
            return None
        extra = {"seed": self.sampler_cfg.get("seed", 0) + n_before} if "seed" in self.sampler_cfg else {}
        return instantiate(self.sampler_cfg, **extra)

    def _resume(self, study: optuna.Study) -> int:
        """Trials a stop left running are closed as failed and asked again (same params); returns how many
        trials are complete."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"resumes_trial": t.number})
            log.info("trial %d was interrupted: asked again with the same params (its jobs resume)", t.number)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if done:
            log.info("study '%s': %d of %d trials already complete, not redone", study.study_name, done,
                     self.n_trials)
        return done

    # -- trials ------------------------------------------------------------------------------------------
    def _jobs(self, trial: optuna.Trial, fixed: list[str]) -> list[list[str]]:
        point = [f"{k}={v}" for k, v in trial.params.items()]
        return [fixed + point + [f"seed={s}"] for s in self.seeds] if self.seeds else [fixed + point]

    def _score(self, study: optuna.Study, trial: optuna.Trial, returns) -> None:
        values, limits = [], {k: [] for k in self.constraints}
        for ret in returns:
            try:
                _ = ret.return_value  # raises if the job failed
                results = json.loads((Path(ret.hydra_cfg.hydra.runtime.output_dir) / "results.json").read_text())
                values.append(float(metric(results, self.objective)))
                for k in limits:
                    limits[k].append(float(metric(results, k)))
            except Exception as e:  # a failed job fails its trial; the search goes on
                log.warning("trial %d failed: %s", trial.number, e)
                study.tell(trial, state=TrialState.FAIL)
                return
        means = {k: statistics.fmean(v) for k, v in limits.items()}
        excess = [excess_over(means[k], self.constraints[k]) for k in limits]
        trial.set_user_attr("values", values)
        trial.set_user_attr("means", means)
        for key, over in zip(limits, excess):
            trial.set_constraint(key, over)
        trial.set_user_attr("feasible", all(x <= 0 for x in excess))
        study.tell(trial, statistics.fmean(values))

    def _write(self, study: optuna.Study) -> None:
        trials = [{"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
                   "values": t.user_attrs.get("values"), "constrained": t.user_attrs.get("means"),
                   "feasible": t.user_attrs.get("feasible")}
                  for t in study.get_trials(deepcopy=False)]
        feasible = [t for t in trials if t["state"] == "COMPLETE" and t["feasible"]]
        pick = min if self.direction == "minimize" else max
        best = pick(feasible, key=lambda t: t["value"]) if feasible else None
        summary = {"study": study.study_name, "objective": self.objective, "direction": self.direction,
                   "constraints": self.constraints, "seeds": self.seeds, "best": best, "trials": trials}
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / "search.yaml").write_text(yaml.safe_dump(summary, sort_keys=False))

    def sweep(self, arguments: list[str]) -> list:
        space, fixed = self._space(arguments)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        study = self._study(space)
        done, job_idx, returns = self._resume(study), 0, []
        n_trials = self.n_trials
        if self.grid:  # every point once
            n_trials = min(n_trials, math.prod(len(d.choices) for d in space.values()))
        while done < n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, n_trials - done))]
            jobs = [self._jobs(t, fixed) for t in trials]
            flat = [j for js in jobs for j in js]
            results = self.launcher.launch(flat, initial_job_idx=job_idx)
            job_idx += len(flat)
            at = 0
            for t, js in zip(trials, jobs):
                self._score(study, t, results[at:at + len(js)])
                at += len(js)
            returns.append(results)
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            self._write(study)
        self._write(study)
        return returns
