"""Small helpers shared by the pipeline and the tools: config nodes to objects, atomic JSON, secret-free
config dumps, one-line errors for command-line tools."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

# A key's last part: `token`, `hf_token`, `access-token`, `api_key`, `secret`, `password`; not a count such as
# `max_new_tokens` (matched once, it was redacted from saved configs and so from the config hash).
_SECRET = re.compile(r"(api[_-]?key|(^|[_-])token$|secret|password)", re.IGNORECASE)
_NAME_OF_SECRET = re.compile(r"_env$")  # e.g. api_key_env: the *name* of an environment variable, kept
# Values that are credentials whatever key carries them: Hugging Face, OpenAI-style, GitHub, W&B (40 hex).
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,}|gh[pousr]_[A-Za-z0-9]{8,}|"
                           r"github_pat_[A-Za-z0-9_]{8,}|[0-9a-f]{40})$")
_ENV_FORM = re.compile(r"^\$\{oc\.env:[A-Za-z_][A-Za-z0-9_]*(,[^}]*)?\}$")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET.search(key.split(".")[-1])) and not _NAME_OF_SECRET.search(key)


def literal_secrets(overrides: list[str]) -> list[str]:
    """Command-line overrides that carry a secret in clear text: a secret-looking key with a literal value,
    or a value shaped like a known credential under any key. Hydra writes every override into the run
    dir's name, its log and .hydra/, so these are refused before Hydra starts."""
    bad = []
    for ov in overrides:
        if "=" not in ov or ov.startswith("-"):
            continue
        key, value = ov.split("=", 1)
        key, value = key.lstrip("+~"), value.strip().strip("'\"")
        if _ENV_FORM.match(value) or value.lower() in ("", "null", "none", "???"):
            continue
        if is_secret_key(key) or _SECRET_VALUE.match(value):
            bad.append(key)
    return bad


def refuse_literal_secrets(tool: str, argv: list[str]) -> None:
    """Exit with status 2 and the `${oc.env:NAME}` form when an override holds a literal secret."""
    if bad := literal_secrets(argv):
        key = bad[0]
        name = re.sub(r"\W", "_", key.split(".")[-1]).upper()
        print(f"{tool}: error: {', '.join(bad)}: a secret given in clear text would be written into the run "
              f"dir's name, its log and Hydra's config files. Put it in an environment variable and pass it "
              f"by name: {name}=... {tool} ... '{key}=${{oc.env:{name}}}'", file=sys.stderr)
        sys.exit(2)


def cache_key(**parts) -> str:
    """A short content hash of JSON-able parts (config hashes, cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def write_json_atomic(obj, path: str | Path) -> Path:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
    tmp.replace(path)
    return path


def redact(obj):
    """Replace values of secret-looking keys (api_key, token, ...) by '***'."""
    if isinstance(obj, dict):
        return {k: ("***" if is_secret_key(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def exit_on_user_error(tool: str):
    """Decorator for command-line tools: a bad input (ValueError, including DataError) prints one clear
    line and exits with status 2 instead of a traceback; anything else (a bug) keeps its traceback."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                print(f"{tool}: error: {e}", file=sys.stderr)
                sys.exit(2)
        return inner
    return wrap


def build(node, **kw):
    """Instantiate a config node, dropping its display `name`."""
    try:
        cfg = {k: v for k, v in OmegaConf.to_container(node, resolve=True, throw_on_missing=True).items() if k != "name"}
    except MissingMandatoryValue as e:
        key = e.full_key  # absolute, e.g. attack.target.file
        raise ValueError(f"{key}: required value not set (it is ??? in the config); set it, e.g. {key}=...") from None
    try:
        return instantiate(cfg, _convert_="all", **kw)
    except InstantiationException as e:
        # Surface our own validation errors as they are (they name the key), not wrapped by Hydra.
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise
