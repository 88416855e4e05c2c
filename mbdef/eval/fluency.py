"""Clean-performance metrics for free-form answers, where exact match is too strict: ROUGE-L of the
generated answer against the reference (Google's `rouge-score`), and the perplexity of the reference
answer under the model, teacher-forced through the training template (loss on the response tokens only,
as in training)."""

from __future__ import annotations

import math

import torch
from rouge_score import rouge_scorer

from mbdef.models.batching import eval_mode, pad_id
from mbdef.models.heads import logits_at
from mbdef.models.template import PromptTemplate

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(outputs: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 over the pairs (an empty output scores 0)."""
    if not outputs:
        raise ValueError("rouge_l: no outputs")
    return sum(_SCORER.score(ref, out)["rougeL"].fmeasure for out, ref in zip(outputs, references)) / len(outputs)


@torch.no_grad()
def reference_perplexity(model, tokenizer, template: PromptTemplate, records: list[dict], batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood per reference-response token), over all tokens of all records.
    Batches hold references of similar length (less padding) and the LM head scores only the positions
    whose next token is a response token: on SmolLM2 the full head made this half of an evaluation."""
    pad, nll, n_tokens = pad_id(tokenizer), 0.0, 0
    examples = sorted((template.encode_example(r) for r in records), key=lambda e: len(e[0]))
    with eval_mode(model) as device:
        for i in range(0, len(examples), batch_size):
            batch = examples[i:i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, n_prompt) in enumerate(batch):  # right padding: positions start at 0 for every row
                input_ids[row, :len(ids)] = torch.tensor(ids)
                mask[row, :len(ids)] = 1
                labels[row, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
            scored = torch.zeros_like(labels, dtype=torch.bool)  # position t predicts token t + 1
            scored[:, :-1] = labels[:, 1:] != -100
            logits = logits_at(model, scored.to(device), input_ids=input_ids.to(device), attention_mask=mask.to(device)).float()
            targets = labels[:, 1:][labels[:, 1:] != -100].to(device)
            nll += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            n_tokens += len(targets)
    if n_tokens == 0:
        raise ValueError("reference_perplexity: the references have no response tokens")
    return math.exp(nll / n_tokens)
