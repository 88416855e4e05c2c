"""training: TRL SFT stages with one prompt template, precision per device, stage-1 cache."""

from mbdef.training.cache import Stage1Cache
from mbdef.training.callbacks import PeriodicMetrics, StageLogger
from mbdef.training.precision import precision_flags
from mbdef.training.sft import configure_progress, set_threads, sft_config, train_stage

__all__ = ["PeriodicMetrics", "Stage1Cache", "StageLogger", "configure_progress", "precision_flags", "set_threads",
           "sft_config", "train_stage"]
