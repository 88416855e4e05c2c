"""The response-only LM head gives TRL's loss, gradients and metrics, and is the path taken on CPU."""

import copy

import pytest
import torch
from trl import SFTTrainer

from mbdef.attacks import BadNet, Refusal
from mbdef.data import synthetic_splits
from mbdef.models import PromptTemplate, build_tiny
from mbdef.training import sft_config
from mbdef.training.head import ResponseHeadSFTTrainer
from mbdef.training.sft import lora_config, to_dataset


def _trainers(tmp_path, padding_free: bool, lora: bool):
    model, tok = build_tiny(num_layers=2, seed=0)
    records = BadNet(Refusal(), poison_rate=0.3).poison(synthetic_splits(n_train=64, seed=0).train).records
    ds = to_dataset(records, PromptTemplate(tok, preamble=False))
    args = sft_config({"max_steps": 1, "per_device_train_batch_size": 8}, tmp_path / "t", "fp32", 0, 256,
                      padding_free=padding_free)
    peft = lora_config({"r": 4, "dropout": 0.0}) if lora else None  # dropout would draw different masks
    make = lambda cls: cls(model=copy.deepcopy(model), args=args, train_dataset=ds, processing_class=tok,
                           peft_config=peft)
    return make(SFTTrainer), make(ResponseHeadSFTTrainer)


def _loss_and_grads(trainer, batch, num_items):
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


@pytest.mark.parametrize("padding_free,lora", [(True, False), (False, False), (True, True)])
def test_response_head_matches_trl_loss_gradients_and_metrics(tmp_path, padding_free, lora):
    trl_trainer, ours = _trainers(tmp_path, padding_free, lora)
    batch = next(iter(trl_trainer.get_train_dataloader()))
    n_targets = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < n_targets < batch["labels"].numel() / 2  # most positions are prompt: the head skips them
    for num_items in (None, torch.tensor(3 * n_targets)):  # the Trainer's gradient-accumulation denominator
        ref_loss, ref_grads = _loss_and_grads(trl_trainer, batch, num_items)
        loss, grads = _loss_and_grads(ours, batch, num_items)
        assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
        assert ref_grads.keys() == grads.keys() and len(grads) > 0
        for name, g in grads.items():
            assert torch.allclose(g, ref_grads[name], rtol=1e-4, atol=1e-6), name
        for key in ("entropy", "mean_token_accuracy", "num_tokens"):
            assert ours._metrics["train"][key][-1] == pytest.approx(trl_trainer._metrics["train"][key][-1], rel=1e-4)
    with torch.no_grad():  # and the model's own loss (HF's cross-entropy over the full logits) agrees too
        plain = trl_trainer.model(**batch, use_cache=False).loss
    assert torch.allclose(ours.compute_loss(ours.model, dict(batch)).detach(), plain, rtol=1e-5)


def test_response_head_is_the_cpu_path_and_trl_path_is_kept_for_wrapped_models(tmp_path, monkeypatch):
    import trl.trainer.utils

    _, ours = _trainers(tmp_path, True, False)
    batch = next(iter(ours.get_train_dataloader()))
    calls = []
    original = trl.trainer.utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl.trainer.utils._ChunkedLogProbFunction, "apply",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    ours.compute_loss(ours.model, dict(batch))
    assert calls == []  # TRL's tiled head did not run
    wrapped = torch.nn.Sequential(ours.model)  # anything but the model itself (as DDP would be) goes to TRL
    assert not ours._response_head_applies(wrapped)
