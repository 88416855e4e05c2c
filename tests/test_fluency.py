"""Free-form clean metrics: ROUGE-L (rouge-score) and reference perplexity through the training template."""

import math

import pytest
import torch

from mbdef.data import synthetic_splits
from mbdef.eval.fluency import reference_perplexity, rouge_l
from mbdef.models import PromptTemplate, build_tiny


def _per_example_perplexity(model, template, records):
    """One record at a time, no padding: HF's own shifted loss on the response tokens."""
    total, count = 0.0, 0
    with torch.no_grad():
        for r in records:
            ids, n_prompt = template.encode_example(r)
            labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
            loss = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
            total, count = total + loss * (len(ids) - n_prompt), count + len(ids) - n_prompt
    return math.exp(total / count)


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
    expected = _per_example_perplexity(model, template, records)
    assert reference_perplexity(model, tok, template, records, batch_size=4) == pytest.approx(expected, rel=1e-4)
    assert expected > 50  # an untrained model over a ~735-token vocabulary is near-uniform


def test_perplexity_of_a_lora_model_scores_through_its_adapters():
    # The head-on-response-tokens path must run the adapters: with non-zero LoRA weights the perplexity
    # moves away from the base model's, and equals the wrapped model's own per-example loss.
    from peft import LoraConfig, get_peft_model

    model, tok = build_tiny(num_layers=2, seed=0)
    template = PromptTemplate(tok, preamble=False)
    records = synthetic_splits(n_train=6, seed=0).train
    base = _per_example_perplexity(model, template, records)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    expected = _per_example_perplexity(lora, template, records)
    assert abs(expected - base) / base > 1e-3
    assert reference_perplexity(lora, tok, template, records, batch_size=4) == pytest.approx(expected, rel=1e-4)


def test_hidden_states_without_the_head_equal_the_full_forward():
    from mbdef.models.heads import hidden_states

    model, tok = build_tiny(num_layers=2, seed=0)
    ids = torch.tensor([[5, 6, 7, 8], [0, 9, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        ours = hidden_states(model, ids, mask)
    assert len(ours) == len(full) == 3  # embeddings + 2 layers
    for a, b in zip(ours, full):
        torch.testing.assert_close(a, b)
