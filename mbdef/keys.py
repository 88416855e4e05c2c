"""Facts about configs and results that several places need, kept once.

- Which config keys do not define a job: where it writes, how it reports, how many threads it uses. They
  enter neither the config hash (a finished job is not redone when they change), nor a run dir's name,
  nor the rows of a report.
- The order defenses are listed in, and which of them are baselines for paired comparisons.
- Where each training row came from (`source` in a run's data/stage*.jsonl).
"""

from __future__ import annotations

import json

# Dotted config keys (a key covers everything under it) that never change what a job computes or saves.
# `save_model` and `eval.periodic_limit` are not among them: they change what a job leaves behind (a model,
# the periodic W&B curves), so a change redoes the job and a report keeps such runs apart.
NON_DEFINING = ("paths", "logger", "hydra", "force", "name", "sweep_id", "progress",
                "trainer.threads", "trainer.checkpoint_every", "trainer.cache_stage1", "eval.periodic_every")

# The headline metrics of a run, in the order tables show them (results.json, reports, the W&B summary).
METRICS = ("asr", "cacc", "false_trigger_rate", "triggered_cacc", "rouge_l", "perplexity")

# Reading order of defenses in every table: no defense, the oracle positive control (it reads the attacker's
# trigger: what removing the backdoor at this budget looks like), the baseline, the other methods, the
# controls, MB-Defense last. Defenses not listed sort between the known ones and MB-Defense, by name.
DEFENSE_ORDER = ("none", "oracle_unlearn", "finetune", "pdb", "recovery_only", "mb_plain_finetune",
                 "random_insert_finetune", "mb_defense")
# Arms a real defender cannot run (they read the attacker's trigger): tables mark them.
POSITIVE_CONTROLS = ("oracle_unlearn",)
# Row sources: `clean` and `attacker` (the training set, split by the attack's poisoned indices, which only the
# run knows, never the defense), `defensive` (rows a defense added to stage 1), `recovery` (stage-2 rows with a
# trigger or an inserted word) and `clean` again (stage-2 rows as drawn from the defender's pool).
CLEAN, ATTACKER, DEFENSIVE, RECOVERY = "clean", "attacker", "defensive", "recovery"
BASELINES = ("finetune", "recovery_only", "mb_plain_finetune", "random_insert_finetune")


def defense_rank(name: str) -> tuple[int, str]:
    if name in DEFENSE_ORDER:
        return (DEFENSE_ORDER.index(name) if name != "mb_defense" else len(DEFENSE_ORDER) + 1, "")
    return (len(DEFENSE_ORDER), str(name))


def is_non_defining(dotted_key: str) -> bool:
    return any(dotted_key == k or dotted_key.startswith(k + ".") for k in NON_DEFINING)


def flatten(d: dict, prefix: str = "", lists_as_json: bool = False) -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay lists, or become JSON text (hashable) with `lists_as_json`."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + ".", lists_as_json))
        else:
            out[key] = json.dumps(v) if lists_as_json and isinstance(v, list) else v
    return out


def without_non_defining(resolved: dict) -> dict:
    """A copy of the nested config without the non-defining keys: what the config hash covers."""
    def strip(d: dict, prefix: str) -> dict:
        return {k: strip(v, f"{prefix}{k}.") if isinstance(v, dict) else v for k, v in d.items()
                if not is_non_defining(f"{prefix}{k}")}
    return strip(resolved, "")


def defining(resolved: dict) -> dict:
    """The flattened config without the non-defining keys."""
    return flatten(without_non_defining(resolved))
