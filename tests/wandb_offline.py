"""Read W&B offline run files (`run-*.wandb`) without a server: history rows and the final summary.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of records, each with a 7-byte
header (crc32 4, length 2, type 1; type 1 = full, 2/3/4 = first/middle/last fragment) whose payloads
are `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7


def records(path: str | Path):
    data, pos, parts = Path(path).read_bytes(), HEADER, []
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # block trailer too small for a header: skip to the next block
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if pos + HEADER + length > len(data):
            raise EOFError(f"{path}: last record cut short (the writer has not finished)")
        parts.append(data[pos + HEADER:pos + HEADER + length])
        pos += HEADER + length
        if kind in (1, 4):  # full record, or last fragment
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(parts))
            parts = []
            yield rec


def read_run(run_dir: str | Path, wait_s: float = 60.0) -> dict:
    """{'history': [row, ...], 'summary': {...}, 'config': {...}, 'exit_code': int | None,
    'run': {name, group, job_type, tags}} of one offline run.

    W&B's writer process may still be flushing the file when `wandb.finish()` has returned (seen once in
    CI: a torn last record), so a file without its exit record, or with a cut record, is read again until
    it is whole or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            run = _parse_run(run_dir)
            if run["exit_code"] is not None or time.monotonic() > deadline:
                return run
        except (DecodeError, EOFError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _parse_run(run_dir: str | Path) -> dict:
    path = next(Path(run_dir).glob("run-*.wandb"))
    history, summary, config, exit_code, run = [], {}, {}, None, {}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                summary[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "config":
            for i in rec.config.update:
                config[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
        elif kind == "exit":
            exit_code = rec.exit.exit_code
        elif kind == "run":
            r = rec.run
            for i in r.config.update:  # the config passed to wandb.init travels in the run record
                config[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
            run = {"name": r.display_name, "group": r.run_group, "job_type": r.job_type, "tags": list(r.tags)}
    return {"history": history, "summary": summary, "config": config, "exit_code": exit_code, "run": run}
