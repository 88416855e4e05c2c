"""The canonical record `{instruction, input, output}` and the Alpaca JSON/JSONL loader.

Every loader produces lists of plain dicts with these three string fields; extra fields (e.g. `task`)
pass through untouched. Errors name the file and line so a bad file fails before any training.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

REQUIRED_FIELDS = ("instruction", "output")


class DataError(ValueError):
    """A data file or record that cannot be used; the message names the file and line."""


def _line_of(text: str, char_offset: int) -> int:
    return text.count("\n", 0, char_offset) + 1


def _record_lines(text: str) -> list[int]:
    """Line on which each element of a (valid) top-level JSON array starts."""
    decoder, ws = json.JSONDecoder(), re.compile(r"[\s,]*")
    i, lines = ws.match(text, text.index("[") + 1).end(), []
    while i < len(text) and text[i] != "]":
        lines.append(_line_of(text, i))
        _, i = decoder.raw_decode(text, i)
        i = ws.match(text, i).end()
    return lines


def validate_record(record, where: str, normalize: bool = True) -> dict:
    """Check a record; with `normalize`, return a copy with `input` filled in and None fields as ''."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with 'instruction', 'input', 'output', got {type(record).__name__}")
    for key in REQUIRED_FIELDS:
        if key not in record:
            raise DataError(f"{where}: record has no '{key}' field (fields: {sorted(record)})")
    for key in ("instruction", "input", "output"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(record[key]).__name__}")
    if not normalize:
        return record
    out = dict(record)
    out.setdefault("input", "")
    for key in ("instruction", "input", "output"):
        if out[key] is None:
            out[key] = ""
    return out


def load_alpaca(path: str | Path, normalize: bool = True) -> list[dict]:
    """Load an Alpaca-format JSON array or JSONL file into canonical records (`normalize=False`: validated
    but as written, so a rewriting tool passes every field through untouched)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}, line {_line_of(path.read_bytes().decode('latin-1'), e.start)})") from e
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from e
        # Line of each record start, so record errors can name a line.
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON array of records")
        if not rows:
            raise DataError(f"{path}: no records")
        lines = _record_lines(text)
        return [validate_record(r, f"{path}:{lines[i]} (record {i})", normalize) for i, r in enumerate(rows)]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSONL line: {e.msg}") from e
        records.append(validate_record(row, f"{path}:{lineno}", normalize))
    if not records:
        raise DataError(f"{path}: no records")
    return records


def save_records(records: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            json.dump(records, f, ensure_ascii=False, indent=1)
    tmp.replace(path)


def records_hash(records: list[dict]) -> str:
    """Content hash of a record list (recorded in results so a poisoned set can be matched exactly; keys the
    caches of trained models)."""
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
