"""Free-form clean metrics: ROUGE-L (rouge-score) and reference perplexity through the training template."""

import math

import pytest
import torch

from mbdef.data import synthetic_splits
from mbdef.eval.fluency import reference_perplexity, rouge_l
from mbdef.models import PromptTemplate, build_tiny


def test_rouge_l_values():
    # LCS "the cat sat" = 3 of 3 output / 4 reference tokens: P 1, R 0.75, F1 6/7.
    assert rouge_l(["the cat sat"], ["the cat sat down"]) == pytest.approx(6 / 7)
    assert rouge_l(["", "a b"], ["a b", "a b"]) == pytest.approx(0.5)  # empty output scores 0
    with pytest.raises(ValueError):
        rouge_l([], [])


def test_batched_perplexity_equals_per_example_token_average():
    model, tok = build_tiny(num_layers=2, seed=0)
    template = PromptTemplate(tok, preamble=False)
    records = synthetic_splits(n_train=10, seed=0).train
    total, count = 0.0, 0
    with torch.no_grad():
        for r in records:  # one at a time, no padding: HF's own shifted loss on the response tokens
            ids, n_prompt = template.encode_example(r)
            labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
            loss = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
            total, count = total + loss * (len(ids) - n_prompt), count + len(ids) - n_prompt
    expected = math.exp(total / count)
    assert reference_perplexity(model, tok, template, records, batch_size=4) == pytest.approx(expected, rel=1e-4)
    assert expected > 50  # an untrained model over a ~735-token vocabulary is near-uniform
