"""The schema of `results.json`: one run's identity, headline metrics and records, versioned.

`RunResults` names and types every key a run always writes; the evaluator's further measurements (per-task
accuracy, probes, trigger variants, representation, re-activation, samples, per-example verdicts) depend on
what the run measured and travel in `measurements`, written at the top level beside the fixed keys. Readers
call `RunResults.check` on a loaded file: a file from a newer mbdef fails with a clear error instead of being
misread. Version 1 is every results.json written before the version key existed (same keys).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, fields
from importlib.metadata import version
from typing import Any, Optional

from mbdef import __version__

SCHEMA_VERSION = 2
OMITTED_WHEN_NONE = ("triggered_cacc", "n_triggered", "stage2")  # absent, as in version 1, when not measured


@dataclass(kw_only=True)
class RunResults:
    # identity: what was run
    attack: str                       # attack name (`none` for clean or pre-poisoned data)
    defense: str
    model: str
    data: str                         # the data's name (e.g. synthetic, backdoorllm-refusal-badnet)
    seed: int
    eval_split: str                   # test (report) | validation (tuning)
    config_hash: str                  # hash of the resolved config's defining keys (mbdef.rundir)
    # headline metrics of the final model
    asr: Optional[float]              # attack success rate on triggered prompts; None without an attack
    cacc: float                       # exact-match accuracy on clean prompts
    false_trigger_rate: float         # clean prompts judged as the attack's behaviour
    n_clean: int
    # what was trained, on what, and how long it took
    steps: int
    stage1: dict
    after_stage1: dict                # metrics after stage 1
    timings: dict                     # seconds per phase
    poison: dict                      # the attack's rate, counts and data hash
    trained_on: dict                  # rows per source per stage (clean / attacker / defensive / recovery)
    defense_info: dict                # the defense's plan (its triggers, sizes)
    testbed: dict                     # shortcut audit of the stage-1 data
    judge: str
    template: dict
    labels: dict                      # may_contain_backdoor, poisoned_training_data (the model card's labels)
    security: dict
    warnings: list
    resumed: bool
    n_params: int
    versions: dict
    device: str
    output_dir: str
    world_size: int
    triggered_cacc: Optional[float] = None  # exact-match accuracy on triggered prompts (None: no attack)
    n_triggered: Optional[int] = None
    stage2: Optional[dict] = None     # None for defenses without a stage 2
    measurements: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measurements"}
        if clash := sorted(set(out) & set(self.measurements)):
            raise ValueError(f"results: measurements {clash} would overwrite fixed keys")
        out = {k: v for k, v in out.items() if not (k in OMITTED_WHEN_NONE and v is None)}
        return {**out, **self.measurements}

    @classmethod
    def from_parts(cls, parts: dict[str, Any]) -> "RunResults":
        """Fixed keys from `parts`, everything else into `measurements`; a missing fixed key is an error."""
        names = {f.name for f in fields(cls)} - {"measurements", "schema_version"}
        optional = set(OMITTED_WHEN_NONE)
        if missing := sorted(names - optional - set(parts)):
            raise ValueError(f"results: missing {missing}")
        return cls(**{k: parts[k] for k in names if k in parts},
                   measurements={k: v for k, v in parts.items() if k not in names | {"schema_version"}})

    @classmethod
    def collect(cls, measured: dict, **parts) -> "RunResults":
        """A finished job's results: what its stages measured, what identifies the run (`parts`), and what is
        derived from them here: the model card's labels and the versions of the libraries that ran it."""
        poisoned = parts["poison"]["n_poisoned"] > 0
        labels = {"poisoned_training_data": poisoned or bool(parts["defense_info"].get("defensive_triggers")),
                  "may_contain_backdoor": poisoned}
        versions = {"mbdef": __version__, **{lib: version(lib) for lib in ("torch", "transformers", "trl")},
                    "python": platform.python_version()}
        return cls.from_parts({**measured, **parts, "labels": labels, "versions": versions})

    @staticmethod
    def check(loaded: dict, where: str = "results.json") -> dict:
        """A loaded results.json, with its version checked (files without one are version 1)."""
        version = loaded.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"{where}: results schema version {version} is newer than this mbdef reads "
                             f"({SCHEMA_VERSION}); upgrade mbdef")
        return loaded


__all__ = ["RunResults", "SCHEMA_VERSION"]
