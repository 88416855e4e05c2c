"""The `model` group: one schema for the node, one per builder (`model.build._target_`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from mbdef.schemas.checks import doc

TEMPLATE_KINDS = ("auto", "chat", "alpaca")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
SPACES = ("implicit", "tokens")


@dataclass
class TemplateConfig:
    kind: str = doc("the tokenizer's chat template when it has one (auto), or forced", one_of=TEMPLATE_KINDS)
    preamble: bool = doc("keep Alpaca's fixed first sentence")
    system_prompt: Optional[str] = doc("chat templates: null = the template's own system turn, '' = an empty one",
                                       None, optional=True)
    max_response_tokens: Optional[int] = doc("cut training responses to this many tokens (evaluation unaffected)",
                                             None, optional=True, ge=1)


@dataclass
class ModelConfig:
    name: str = doc("the model's name in reports and run directories")
    build: Any = doc("the builder's arguments (schema by its _target_)")
    pretrain: bool = doc("train a clean base first on data.pretrain (the embedded default)")
    template: TemplateConfig = doc("the prompt template of training and evaluation alike")


@dataclass
class TinyBuildConfig:
    _target_: str = doc("mbdef.models.build_tiny")
    hidden_size: int = doc("model width", ge=1)
    num_layers: int = doc("transformer layers", ge=1)
    num_heads: int = doc("attention heads (divides hidden_size)", ge=1)
    intermediate_size: int = doc("MLP (intermediate) width", ge=1)
    vocab_size: int = doc("BPE vocabulary (spaces=tokens only)", ge=1)
    spaces: str = doc("implicit: word-level tokens | tokens: byte-level BPE with space tokens", one_of=SPACES)
    seed: int = doc("run seed; initialisation draws from its own stream", ge=0)
    max_position_embeddings: int = doc("longest sequence", optional=True, ge=1)

    @staticmethod
    def relations(v: dict) -> list[str]:
        if isinstance(v.get("hidden_size"), int) and isinstance(v.get("num_heads"), int) and v["num_heads"] > 0 \
                and v["hidden_size"] % v["num_heads"]:
            return [f"hidden_size: {v['hidden_size']} is not divisible by num_heads ({v['num_heads']})"]
        return []


@dataclass
class PretrainedBuildConfig:
    _target_: str = doc("mbdef.models.load_pretrained")
    name_or_path: Optional[str] = doc("hub name or local directory")
    dtype: str = doc("weights' dtype (auto: bf16 on a GPU that supports it, fp32 on CPU)", one_of=DTYPES)
    attn_implementation: Optional[str] = doc("attention kernel (auto: flash-attention 2 when installed, else sdpa)",
                                             one_of=ATTENTION)
    trust_remote_code: bool = doc("run code from the model repository (off unless asked)")
    use_kernels: bool = doc("swap layers for Hugging Face Hub kernels, code fetched from the Hub at load time "
                            "(transformers' default; mbdef's is off: +model.build.use_kernels=true asks for them)",
                            False, optional=True)
    allow_pickle: bool = doc("load pickled .bin checkpoints (they can run code when loaded)")
    revision: Optional[str] = doc("hub revision", None)
    gradient_checkpointing: bool = doc("recompute activations in training (7B-class full fine-tuning)")
    token: Optional[str] = doc("hub access token for gated models: pass it as ${oc.env:HF_TOKEN}, never in clear "
                               "text (the HF_TOKEN variable alone also works)", None, optional=True)


@dataclass
class WheelGGUFBuildConfig(PretrainedBuildConfig):
    _target_: str = doc("mbdef.models.load_wheel_gguf")
    package: str = doc("the installed wheel's import name")
    file: str = doc("the GGUF file inside the wheel")
    cache_dir: str = doc("where the converted safetensors copy is kept")
