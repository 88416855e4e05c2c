"""Hydra set-up for conf/: the resolvers its files use and the schemas its defaults lists name.

Nothing happens at import: entry points call `register()` before they compose (the `mbdef` commands do; a
notebook or test that composes conf/ with Hydra's compose API calls it first).
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

from mbdef.attacks.targets import NEGSENTIMENT, REFUSAL
from mbdef.io import is_secret_key
from mbdef.keys import is_non_defining
from mbdef.schemas import register as register_schemas

# Strings the configs share with the code, kept once in the code (`${mbdef_fact:refusal}`).
FACTS = {"refusal": REFUSAL, "negsentiment": NEGSENTIMENT}


def job_dirname(overrides: str) -> str:
    """A run directory name from Hydra's `override_dirname`: deterministic, so re-running the same command
    finds (and skips or resumes) its own job. Keys that never change what a job computes (mbdef.keys) are
    left out, so are overrides of secret-looking keys (even in their `${oc.env:…}` form); `/` of group paths
    is flattened; a long name is shortened by a hash."""
    key = lambda o: o.split("=", 1)[0].lstrip("+~")
    kept = [o for o in overrides.split(",") if "=" not in o or not (is_secret_key(key(o)) or is_non_defining(key(o)))]
    name = ",".join(kept).replace("/", ".").replace(" ", "") or "default"
    return name if len(name) <= 120 else f"{name[:96]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def fact(name: str) -> str:
    if name not in FACTS:
        raise ValueError(f"mbdef_fact: unknown fact '{name}'; known: {sorted(FACTS)}")
    return FACTS[name]


def register() -> None:
    """The resolvers and the composed groups' schemas (idempotent)."""
    OmegaConf.register_new_resolver("mbdef_dirname", job_dirname, replace=True)
    OmegaConf.register_new_resolver("mbdef_fact", fact, replace=True)
    register_schemas()
