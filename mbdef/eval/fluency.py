"""Clean-performance metrics for free-form answers, where exact match is too strict: ROUGE-L of the
generated answer against the reference (Google's `rouge-score`), and the perplexity of the reference
answer under the model, teacher-forced through the training template (loss on the response tokens only,
as in training)."""

from __future__ import annotations

import math

import torch
from rouge_score import rouge_scorer

from mbdef.eval.batching import eval_mode, pad_id
from mbdef.models.template import PromptTemplate

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(outputs: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 over the pairs (an empty output scores 0)."""
    if not outputs:
        raise ValueError("rouge_l: no outputs")
    return sum(_SCORER.score(ref, out)["rougeL"].fmeasure for out, ref in zip(outputs, references)) / len(outputs)


@torch.no_grad()
def reference_perplexity(model, tokenizer, template: PromptTemplate, records: list[dict], batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood per reference-response token), over all tokens of all records."""
    pad, nll, n_tokens = pad_id(tokenizer), 0.0, 0
    with eval_mode(model) as device:
        for i in range(0, len(records), batch_size):
            examples = [template.encode_example(r) for r in records[i:i + batch_size]]
            width = max(len(ids) for ids, _ in examples)
            input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
            labels = torch.full((len(examples), width), -100, dtype=torch.long)
            mask = torch.zeros((len(examples), width), dtype=torch.long)
            for row, (ids, n_prompt) in enumerate(examples):  # right padding: positions start at 0 for every row
                input_ids[row, :len(ids)] = torch.tensor(ids)
                mask[row, :len(ids)] = 1
                labels[row, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            targets = labels[:, 1:].to(device)
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                                       reduction="sum")
            nll += losses.item()
            n_tokens += int((targets != -100).sum())
    if n_tokens == 0:
        raise ValueError("reference_perplexity: the references have no response tokens")
    return math.exp(nll / n_tokens)
