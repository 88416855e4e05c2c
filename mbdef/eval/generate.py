"""Batched greedy generation through the training template, decoding only the new tokens."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from mbdef.models.batching import eval_mode, left_pad, pad_id
from mbdef.models.template import PromptTemplate


@torch.no_grad()
def generate(model, tokenizer, template: PromptTemplate, records: list[dict], batch_size: int = 64,
             max_new_tokens: int = 32, progress: bool = False) -> list[str]:
    """Greedy outputs for `records`, in order. Prompts are length-sorted and left-padded per batch."""
    if not records:
        return []
    encoded = [template.encode_prompt(r) for r in records]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(records)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with eval_mode(model) as device:
        for batch in tqdm(batches, desc="generate", disable=not progress, leave=False):
            ids, mask = left_pad([encoded[i] for i in batch], pad_id(tokenizer))
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer), use_cache=True)
            for row, i in enumerate(batch):  # decode only the new tokens, after the padded prompt
                outputs[i] = tokenizer.decode(out[row, ids.shape[1]:], skip_special_tokens=True).strip()
    return outputs
