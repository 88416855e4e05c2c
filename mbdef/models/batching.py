"""What every evaluation pass over a model shares: eval mode for its duration, the pad id, left padding."""

from __future__ import annotations

import contextlib

import torch


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id (many chat models ship without a pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask with every sequence ending at the last column, so the next token of
    every row is generated (or read) at the same position."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


@contextlib.contextmanager
def eval_mode(model):
    """model.eval() inside the block (no dropout), the caller's mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)
