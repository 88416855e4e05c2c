"""models: the embedded tiny Llama, any HF causal LM, and the shared prompt template."""

from mbdef.models.factory import ModelError, load_pretrained, resolve_dtype
from mbdef.models.template import PromptTemplate
from mbdef.models.tiny import build_tiny, build_tokenizer
from mbdef.models.wheel_gguf import load_wheel_gguf

__all__ = ["ModelError", "PromptTemplate", "build_tiny", "build_tokenizer", "load_pretrained", "load_wheel_gguf", "resolve_dtype"]
