"""Stage-1 cache: jobs whose stage 1 is identical (e.g. `none` and `finetune`) train it once.

The key hashes everything that determines the stage-1 weights: the training records, the model config,
the template, the stage-1 trainer arguments, precision and seed. A model is published by an atomic
rename of a finished directory, under a file lock, so parallel jobs never see half-written weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from filelock import FileLock


def cache_key(**parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class Stage1Cache:
    def __init__(self, cache_dir: str | Path | None):
        self.root = Path(cache_dir) if cache_dir else None

    def path(self, key: str) -> Path | None:
        return self.root / key if self.root else None

    def hit(self, key: str) -> Path | None:
        p = self.path(key)
        return p if p is not None and (p / "COMPLETE").is_file() else None

    def lock(self, key: str) -> FileLock | None:
        if not self.root:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"))

    def publish(self, key: str, model, tokenizer, record: dict) -> Path:
        final = self.path(key)
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "stage1.json").write_text(json.dumps(record, default=str))
        (tmp / "COMPLETE").write_text("ok\n")  # written last: a directory without it is never used
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final
