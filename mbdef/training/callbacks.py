"""Trainer callbacks that know nothing of attacks or eval: they call the functions they are given."""

from __future__ import annotations

import logging
from collections.abc import Callable

from transformers import TrainerCallback


log = logging.getLogger("mbdef")


class StageLogger(TrainerCallback):
    """Forwards the trainer's logs as `<stage>/<key>` on one monotonic step (offset by earlier stages)."""

    def __init__(self, stage: str, log: Callable[[dict, int], None], step_offset: int = 0):
        self.stage, self.log, self.step_offset = stage, log, step_offset

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            metrics = {f"{self.stage}/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
            self.log(metrics, self.step_offset + state.global_step)


class PeriodicMetrics(TrainerCallback):
    """Every `every` steps (and at the end of the stage) computes `metrics_fn(model)` and logs it."""

    def __init__(self, stage: str, metrics_fn: Callable, log: Callable[[dict, int], None], every: int,
                 step_offset: int = 0):
        self.stage, self.metrics_fn, self.log, self.every, self.step_offset = stage, metrics_fn, log, every, step_offset

    def _measure(self, model, step: int):
        metrics = self.metrics_fn(model)  # evaluation passes put the model back in its training mode
        row = {f"{self.stage}/{k}": v for k, v in metrics.items()}
        log.info("%s step %d: %s", self.stage, step,
                 "  ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
        self.log(row, self.step_offset + step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self._measure(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every:
            self._measure(model, state.global_step)


class ProgressLines(TrainerCallback):
    """One log line per trainer log instead of a progress bar: jobs running side by side each print whole,
    labelled lines (`[badnet/mb_defense s0] stage1 250/500 loss 0.53`), where bars would interleave."""

    def __init__(self, label: str, stage: str):
        self.prefix = f"[{label}] {stage}" if label else stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            log.info("%s %d/%d  loss %.3f", self.prefix, state.global_step, state.max_steps, float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):
        log.info("%s done: %d steps", self.prefix, state.global_step)
