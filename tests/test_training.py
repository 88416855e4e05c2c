"""The SFT stage: padding-free batches give the padded loss exactly; training changes weights; loss on responses."""

import copy

import torch
from trl import SFTTrainer

from mbdef.attacks import BadNet, Refusal
from mbdef.data import synthetic_splits
from mbdef.models import PromptTemplate, build_tiny
from mbdef.training import sft_config, train_stage
from mbdef.training.sft import to_dataset

KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


def _first_batch(model, tok, ds, padding_free, tmp_path):
    args = sft_config({"max_steps": 1, "per_device_train_batch_size": 8}, tmp_path / str(padding_free), "fp32", 0,
                      256, padding_free=padding_free)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    return {k: v for k, v in next(iter(trainer.get_train_dataloader())).items() if k in KEYS}


def test_padding_free_loss_equals_padded_loss(tmp_path):
    model, tok = build_tiny(num_layers=2, seed=0)
    records = BadNet(Refusal(), poison_rate=0.3).poison(synthetic_splits(n_train=64, seed=0).train).records
    ds = to_dataset(records, PromptTemplate(tok, preamble=False))
    padded = _first_batch(copy.deepcopy(model), tok, ds, False, tmp_path)
    flat = _first_batch(copy.deepcopy(model), tok, ds, True, tmp_path)
    assert padded["input_ids"].shape[0] == 8 and flat["input_ids"].shape[0] == 1  # really flattened
    assert (flat["labels"] != -100).sum() == (padded["labels"] != -100).sum()  # same samples, same targets
    with torch.no_grad():  # use_cache=False as in TRL's compute_loss: a KV cache disables packed-sequence masks
        assert torch.allclose(model(**padded, use_cache=False).loss, model(**flat, use_cache=False).loss, atol=1e-5)
        # and the flattened batch really needs its block mask: without position_ids the loss differs
        no_pos = {k: v for k, v in flat.items() if k != "position_ids"}
        assert not torch.allclose(model(**padded, use_cache=False).loss, model(**no_pos, use_cache=False).loss, atol=1e-5)


def test_stage_trains_logs_loss_and_changes_weights(tmp_path):
    model, tok = build_tiny(num_layers=2, seed=0)
    before = copy.deepcopy(model.state_dict())
    records = synthetic_splits(n_train=64, seed=0).train
    out = train_stage(model, tok, PromptTemplate(tok, preamble=False), records,
                      {"max_steps": 3, "per_device_train_batch_size": 8, "logging_steps": 1},
                      tmp_path / "s", precision="fp32", padding_free=True)
    losses = [h["loss"] for h in out["log_history"] if "loss" in h]
    assert out["steps"] == 3 and len(losses) == 3 and all(l > 0 for l in losses)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)


def test_a_stage_can_train_by_epochs(tmp_path):
    """max_steps -1 hands the count to num_train_epochs: 64 rows at batch 8 are 8 steps a pass, so 1.5 passes
    are 12 steps (the last pass cut short, as transformers' Trainer does)."""
    model, tok = build_tiny(num_layers=2, seed=0)
    out = train_stage(model, tok, PromptTemplate(tok, preamble=False), synthetic_splits(n_train=64, seed=0).train,
                      {"max_steps": -1, "num_train_epochs": 1.5, "per_device_train_batch_size": 8},
                      tmp_path / "s", precision="fp32")
    assert out["steps"] == 12
