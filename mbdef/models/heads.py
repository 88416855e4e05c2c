"""The LM head on chosen positions only. A causal LM's forward projects every position onto the vocabulary
(SmolLM2: 49,152 words); a loss or perplexity needs only the positions whose next token is scored, and a
hidden-state analysis needs none. Training (mbdef/training/head.py) and evaluation share these."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def causal_lm(model):
    """The PreTrainedModel behind `model` (itself, or a LoRA PeftModel's base), or None when it is wrapped
    in anything else (DDP, FSDP, prompt learning), whose forward must not be bypassed."""
    if isinstance(model, PreTrainedModel):
        return model
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency; a stripped install just takes the full forward
        return None
    if isinstance(model, PeftModel) and not model.peft_config[model.active_adapter].is_prompt_learning:
        return model.get_base_model()
    return None


def logits_at(model, where: torch.Tensor, **inputs) -> torch.Tensor:
    """[n, vocab] logits at the positions where `where` ([batch, seq], bool) is True, in row-major order:
    the body runs once on `inputs` (input_ids, attention_mask, position_ids, ...), the head only there.
    A wrapped model falls back to its full forward."""
    lm = causal_lm(model)
    if lm is None:
        return model(**inputs).logits[where]
    hidden = lm.base_model(**inputs, use_cache=False).last_hidden_state
    return lm.get_output_embeddings()(hidden[where])


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every layer's hidden states (embeddings first), without the LM head where it can be skipped."""
    lm = causal_lm(model)
    body = model if lm is None else lm.base_model
    return body(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                use_cache=False).hidden_states
