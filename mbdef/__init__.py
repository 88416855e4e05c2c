"""mbdef: backdoor attacks and defenses (MB-Defense first) for instruction-tuned LLMs."""

import hashlib
from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.7.0"

# conf/ sits beside the package in the repository (editable install, see README).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def job_dirname(overrides: str) -> str:
    """A run directory name from Hydra's `override_dirname`: deterministic, so re-running the same command
    finds (and skips or resumes) its own job; `/` of group paths flattened; long names shortened by a hash;
    overrides of secret-looking keys (even in their `${oc.env:…}` form) left out."""
    from mbdef.io import is_secret_key

    kept = [o for o in overrides.split(",") if "=" not in o or not is_secret_key(o.split("=", 1)[0].lstrip("+~"))]
    name = ",".join(kept).replace("/", ".").replace(" ", "") or "default"
    return name if len(name) <= 120 else f"{name[:96]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _non_defining_overrides() -> list[str]:
    from mbdef.keys import NON_DEFINING_OVERRIDES

    return list(NON_DEFINING_OVERRIDES)


def _fact(name: str) -> str:
    """Strings the configs share with the code, kept once in the code (`${mbdef_fact:refusal}`)."""
    from mbdef.attacks.targets import NEGSENTIMENT, REFUSAL

    facts = {"refusal": REFUSAL, "negsentiment": NEGSENTIMENT}
    if name not in facts:
        raise ValueError(f"mbdef_fact: unknown fact '{name}'; known: {sorted(facts)}")
    return facts[name]


OmegaConf.register_new_resolver("mbdef_dirname", job_dirname, replace=True)
OmegaConf.register_new_resolver("mbdef_fact", _fact, replace=True)
OmegaConf.register_new_resolver("mbdef_nondefining", _non_defining_overrides, replace=True)


def _register_schemas() -> None:
    from mbdef.schemas import register

    register()


_register_schemas()  # before any compose: conf/ names the schemas in its defaults lists
