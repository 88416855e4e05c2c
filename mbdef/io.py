"""Small file helpers shared by the pipeline: atomic JSON, secret-free config dumps."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.IGNORECASE)


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
        return {k: ("***" if _SECRET.search(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj
