"""Load any Hugging Face causal LM by hub name or local path (the same path the tiny model takes)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


class ModelError(ValueError):
    """A model path or name that cannot be loaded; the message says what to fix."""


def _looks_local(name_or_path: str) -> bool:
    return name_or_path.startswith(("/", ".", "~")) or os.sep in name_or_path and Path(name_or_path).exists()


def default_device() -> torch.device:
    """Where a built model is put: this process's GPU when there is one (LOCAL_RANK under torchrun), else the
    CPU. Placing it at build time puts a model that trains nothing (post-hoc defenses, a reference model) on
    the same device as one the Trainer has moved."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # bf16 on these CPUs is several times slower than fp32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ModelError(f"model.build.dtype: '{dtype}' is not one of auto, float32, bfloat16, float16") from None


def resolve_attention(attn_implementation: str | None) -> str | None:
    """`auto`: flash-attention 2 on a CUDA GPU when the flash_attn package is installed, else SDPA."""
    if attn_implementation != "auto":
        return attn_implementation
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_pretrained(name_or_path: str, dtype: str = "auto", attn_implementation: str | None = "auto",
                    trust_remote_code: bool = False, revision: str | None = None, allow_pickle: bool = False,
                    gradient_checkpointing: bool = False, token: str | None = None, use_kernels: bool = False, **_):
    """(model, tokenizer) from a hub name or a local directory. Weights load from safetensors only: pickled
    checkpoints (`pytorch_model.bin`) can run code when unpickled, so they need `allow_pickle=true`."""
    if not name_or_path or name_or_path == "???":
        raise ModelError("model.build.name_or_path: give a hub name (e.g. Qwen/Qwen2.5-0.5B-Instruct) or a local path")
    path = Path(os.path.expanduser(name_or_path))
    if _looks_local(name_or_path) or path.exists():
        if not path.is_dir():
            raise ModelError(f"model.build.name_or_path: local model directory '{name_or_path}' does not exist")
        if not (path / "config.json").is_file():
            raise ModelError(f"model.build.name_or_path: '{name_or_path}' has no config.json (not a saved HF model)")
        if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            raise ModelError(f"model.build.name_or_path: '{name_or_path}' has no tokenizer files; save the tokenizer "
                             f"with tokenizer.save_pretrained('{name_or_path}')")
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision,
                                            token=token)
    except (OSError, ValueError) as e:
        raise ModelError(f"model.build.name_or_path: cannot load a config from '{name_or_path}': {e}") from e
    if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])) and config.model_type not in (
            "llama", "qwen2", "mistral", "gpt2", "gpt_neox", "phi3", "gemma", "gemma2"):
        raise ModelError(f"model.build.name_or_path: '{name_or_path}' is a '{config.model_type}' model with "
                         f"architectures {config.architectures}; mbdef needs a causal LM")
    if path.is_dir() and not allow_pickle and not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.glob("*.bin")) or ["no weight files"]
        raise ModelError(f"model.build.name_or_path: '{name_or_path}' has no safetensors weights ({', '.join(pickled)}); "
                         f"pickled checkpoints can execute code when loaded. Convert them to safetensors, or set "
                         f"model.build.allow_pickle=true if you trust the source")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision,
                                              token=token)
    kwargs = {"dtype": resolve_dtype(dtype), "trust_remote_code": trust_remote_code, "revision": revision,
              "token": token, "use_safetensors": None if allow_pickle else True,
              # transformers enables Hub kernels by default; on a GPU that is code downloaded at load time,
              # which also fails on an offline machine. Off unless asked, like trust_remote_code.
              "use_kernels": use_kernels}
    if attn := resolve_attention(attn_implementation):
        kwargs["attn_implementation"] = attn
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs).to(default_device())
    if gradient_checkpointing:  # recompute activations in training: 7B full fine-tuning fits, at ~30 % more compute
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
