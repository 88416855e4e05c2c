"""Small helpers shared by the pipeline and the tools: config nodes to objects, atomic JSON, secret-free
config dumps, one-line errors for command-line tools."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)
_NAME_OF_SECRET = re.compile(r"_env$")  # e.g. api_key_env: the *name* of an environment variable, kept


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
        return {k: ("***" if _SECRET.search(str(k)) and not _NAME_OF_SECRET.search(str(k)) and v not in (None, "")
                    else redact(v)) for k, v in obj.items()}
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
