"""The typed shape of every config group, with each field's default, help and allowed values in one place.

- `attack`, `defense` and `eval` options name their schema first in their defaults list (e.g.
  `conf/defense/pdb.yaml`: `- /schema/defense/pdb@_here_`), so Hydra checks types and refuses unknown keys
  when it composes. The other groups are matched to their schema by `_target_` (data, model.build, logger,
  attack.target, eval.judge) or by place (trainer, model).
- `validate(cfg)` checks every declared field of a composed config against its type and allowed values
  before `run()` loads anything, and raises one `ConfigError` naming each bad key, its value and the range.
- The composed groups' defaults live in their schemas, once (the YAML options hold only what makes them
  that option: a name, a target, a trigger); the other groups' YAML holds the values, the schema the help and
  ranges. Fields marked `optional` may be absent. The resolved config, and with it every run directory's
  config hash, is the same as when the YAML held every default.

`mbdef.schemas.describe("defense/mb_defense")` prints a schema's fields with help and allowed values.
"""

from __future__ import annotations

from dataclasses import fields

from hydra.core.config_store import ConfigStore

from mbdef.schemas import attack, data, defense, eval, model, run, trainer
from mbdef.schemas.checks import Check, ConfigError, doc
from mbdef.schemas.validate import check_values, validate, validate_group

SCHEMAS = {
    "run": {"run": run.RunConfig},
    "attack": {"base": attack.AttackConfig, "one_trigger": attack.OneTriggerConfig,
               "sentence": attack.SentenceConfig, "many_triggers": attack.ManyTriggersConfig},
    "target": {"refusal": attack.RefusalTargetConfig, "jailbreak": attack.JailbreakTargetConfig,
               "negsentiment": attack.NegSentimentTargetConfig, "fixed": attack.FixedTargetConfig},
    "defense": {"base": defense.DefenseConfig, "clean_finetune": defense.CleanFinetuneConfig,
                "mb_defense": defense.MBDefenseConfig, "recovery_only": defense.RecoveryOnlyConfig,
                "random_insert": defense.RandomInsertConfig, "pdb": defense.PDBConfig,
                "oracle_unlearn": defense.OracleUnlearnConfig, "prune": defense.PruneConfig,
                "quantize": defense.QuantizeConfig, "crow": defense.CrowConfig, "onion": defense.OnionConfig,
                "cleangen": defense.CleanGenConfig, "decoding": defense.DecodingConfig},
    "eval": {"eval": eval.EvalConfig},
    "judge": {"base": eval.JudgeConfig, "classifier": eval.ClassifierJudgeConfig, "exact": eval.ExactJudgeConfig,
              "regex": eval.RegexJudgeConfig, "llm": eval.LLMJudgeConfig},
    "trainer": {"trainer": trainer.TrainerConfig, "stage": trainer.StageConfig, "lora": trainer.LoraConfig},
    "model": {"model": model.ModelConfig, "template": model.TemplateConfig, "tiny": model.TinyBuildConfig,
              "pretrained": model.PretrainedBuildConfig, "wheel_gguf": model.WheelGGUFBuildConfig},
    "data": {"synthetic": data.SyntheticDataConfig, "alpaca_json": data.AlpacaDataConfig,
             "hf": data.HFDataConfig, "backdoorllm": data.BackdoorLLMDataConfig},
    "logger": {"wandb": run.WandbConfig},
}
# Groups whose options Hydra checks at compose time (their YAML names `/schema/<group>/<name>`).
COMPOSED = ("attack", "defense", "eval")

__all__ = ["SCHEMAS", "Check", "ConfigError", "describe", "check_values", "doc", "register", "validate", "validate_group"]


def register() -> None:
    """Store the composed groups' schemas as `schema/<group>/<name>` in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group in COMPOSED:
        for name, node in SCHEMAS[group].items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def describe(path: str) -> str:
    """The documented fields of a schema, e.g. describe("defense/mb_defense"): `name: help [allowed values]`."""
    group, name = path.split("/")
    out = []
    for f in fields(SCHEMAS[group][name]):
        check = f.metadata.get("check")
        out.append(f"{f.name}: {f.metadata.get('help', '')}" + (f"; allowed: {check.describe()}" if check else "")
                   + (" (may be absent)" if f.metadata.get("optional") else ""))
    return "\n".join(out)
