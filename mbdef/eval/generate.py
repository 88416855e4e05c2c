"""Batched greedy generation through the training template, decoding only the new tokens."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

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
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generate", disable=not progress, leave=False):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends at the same column
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad_id, use_cache=True)
        for row, i in enumerate(batch):
            outputs[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    model.train(was_training)
    return outputs
