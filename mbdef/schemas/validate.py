"""Check a composed config against the schemas before anything runs: each declared field's type and allowed
values, the relations a schema states between its fields, and no unknown key in a closed node."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from mbdef.schemas import attack, data, eval, model, run
from mbdef.schemas.checks import ConfigError

# Nodes that Hydra does not type are matched to their schema by what they build.
BY_TARGET = {
    "mbdef.data.synthetic_splits": data.SyntheticDataConfig, "mbdef.data.alpaca_splits": data.AlpacaDataConfig,
    "mbdef.data.hf_splits": data.HFDataConfig, "mbdef.data.backdoorllm_splits": data.BackdoorLLMDataConfig,
    "mbdef.models.build_tiny": model.TinyBuildConfig, "mbdef.models.load_pretrained": model.PretrainedBuildConfig,
    "mbdef.models.load_wheel_gguf": model.WheelGGUFBuildConfig, "mbdef.tracking.WandbTracker": run.WandbConfig,
    "mbdef.attacks.Refusal": attack.RefusalTargetConfig, "mbdef.attacks.Jailbreak": attack.JailbreakTargetConfig,
    "mbdef.attacks.NegSentiment": attack.NegSentimentTargetConfig, "mbdef.attacks.Fixed": attack.FixedTargetConfig,
    "mbdef.eval.judges.ClassifierJudge": eval.ClassifierJudgeConfig,
    "mbdef.eval.judges.ExactJudge": eval.ExactJudgeConfig,
    "mbdef.eval.judges.RegexJudge": eval.RegexJudgeConfig, "mbdef.eval.judges.LLMJudge": eval.LLMJudgeConfig,
}


def validate(cfg: DictConfig, schema: type = run.RunConfig, prefix: str = "") -> None:
    """Raise one ConfigError listing every key whose value its schema refuses (key, value, allowed values)."""
    problems: list[str] = []
    _check(cfg, schema, prefix, problems)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} config values are not allowed:\n  " + "\n  ".join(problems))


def validate_group(node: DictConfig, prefix: str) -> None:
    """validate() for one group's node on its own (the tools that compose only `attack` or `eval.judge`)."""
    if (schema := schema_of(node, None)) is not None:
        validate(node, schema, prefix)


def check_values(schema: type, prefix: str, **values) -> None:
    """The schema's allowed values for arguments given in Python (a class built without a config): the same
    checks and messages as `validate`, so a range is stated once, in the schema."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    problems = [f"{prefix}{k}: {_show(v)} {why} ({fields[k].metadata['help']})" for k, v in values.items()
                if (check := fields[k].metadata.get("check")) is not None and (why := check.violation(v))]
    if problems:
        raise ConfigError("; ".join(problems))


def schema_of(node: DictConfig, declared: Any) -> type | None:
    typed = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(typed):
        return typed
    target = node.get("_target_") if "_target_" in node else None
    if target in BY_TARGET:
        return BY_TARGET[target]
    declared = _strip_optional(declared)
    return declared if dataclasses.is_dataclass(declared) else None


def _check(node: DictConfig, schema: type, prefix: str, problems: list[str]) -> None:
    declared, hints = {f.name: f for f in dataclasses.fields(schema)}, _hints(schema)
    if not getattr(schema, "OPEN", False):
        for key in sorted(set(map(str, node.keys())) - set(declared)):
            problems.append(f"{prefix}{key}: unknown key; known: {', '.join(sorted(declared))}")
    values, present = {}, set(map(str, node.keys()))  # `in node` is False for a ??? value: keys() has it
    for name, f in declared.items():
        key = prefix + name
        if name not in present:
            if not f.metadata.get("optional"):
                problems.append(f"{key}: missing (required by {schema.__name__})")
            continue
        if OmegaConf.is_missing(node, name):
            continue  # `???`: the loader says "required value not set" when it needs it
        try:
            value = node[name]
        except InterpolationResolutionError:
            continue  # e.g. ${hydra:...} outside a Hydra run: not a value this check can judge
        if isinstance(value, DictConfig):
            if (sub := schema_of(value, hints[name])) is not None:
                _check(value, sub, key + ".", problems)
            continue
        plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value
        why = _type_problem(plain, hints[name])
        if why is None and (check := f.metadata.get("check")) is not None:
            why = check.violation(plain)
        if why:
            problems.append(f"{key}: {_show(plain)} {why} ({f.metadata['help']})")
        else:
            values[name] = plain
    for message in getattr(schema, "relations", lambda v: [])(values):  # between fields that passed alone
        problems.append(prefix + message)


@functools.lru_cache(maxsize=None)
def _hints(schema: type) -> dict:
    return typing.get_type_hints(schema)


def _strip_optional(tp):
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


def _type_problem(value, tp) -> str | None:
    if tp is Any:
        return None
    optional = typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)
    tp = _strip_optional(tp)
    if value is None:
        return None if optional or tp is Any else "is null; a value is required"
    if typing.get_origin(tp) in (list, typing.List):
        if not isinstance(value, list):
            return "is not a list"
        item = (typing.get_args(tp) or (Any,))[0]
        return next((f"item {_show(v)} {why}" for v in value if (why := _type_problem(v, item))), None)
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(tp)
    if ok is not None and not ok(value):
        return f"is not of type {tp.__name__}"
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "is not a mapping"
    return None


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)
