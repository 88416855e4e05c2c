"""Stage snapshots and the stage-1 cache.

A snapshot is a directory with a model's weights (safetensors), its tokenizer and a `stage.json` record,
published by renaming a finished temp directory, so a reader never sees half of one. Jobs use
snapshots to resume after a finished stage; the stage-1 cache shares them between jobs whose stage 1 is
identical (e.g. `none` and `finetune`). The cache key hashes everything that determines the stage-1
weights: the training records, the model config, the template, the stage-1 trainer arguments,
precision and seed; publishing happens under a file lock, so parallel jobs train a shared stage 1 once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from filelock import FileLock
from safetensors.torch import load_file


def save_snapshot(folder: str | Path, model, tokenizer, record: dict) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "stage.json").write_text(json.dumps(record, default=str))  # written last
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def load_weights(model, folder: str | Path) -> None:
    """Load safetensors weights (single file or sharded) into an existing model, without building a
    second copy of the model (a 7B model would otherwise need twice its memory)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    loaded = set()
    for name in files:
        state = load_file(folder / name, device=str(next(model.parameters()).device))
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{folder / name}: weights do not fit this model (unexpected: {unexpected[:5]})")
        loaded |= set(state)
    missing = {k for k, _ in model.named_parameters()} - loaded
    tied = {k for k in missing if k.endswith("lm_head.weight") and model.config.tie_word_embeddings}
    if missing - tied:
        raise ValueError(f"{folder}: snapshot lacks weights {sorted(missing - tied)[:5]}")


def load_snapshot(folder: str | Path, model) -> dict | None:
    """The snapshot's record after loading its weights into `model`; None if there is no finished one."""
    folder = Path(folder)
    if not (folder / "stage.json").is_file():
        return None
    load_weights(model, folder)
    return json.loads((folder / "stage.json").read_text())


class Stage1Cache:
    def __init__(self, cache_dir: str | Path | None):
        self.root = Path(cache_dir) if cache_dir else None

    def path(self, key: str) -> Path | None:
        return self.root / key if self.root else None

    def lock(self, key: str) -> FileLock | None:
        if not self.root:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"))

    def publish(self, key: str, model, tokenizer, record: dict) -> Path:
        return save_snapshot(self.path(key), model, tokenizer, record)
