"""Pruning and quantization (the peer benchmark's weight-space defenses): each mechanism measured on the
weights themselves, bad knobs refused before anything runs, and a run that shares the undefended stage 1."""

import json

import pytest
import torch
from safetensors.torch import load_file

from mbdef.defenses.weights import (block_linears, decoder_blocks, input_norms, magnitude_prune, quantize_rtn,
                                   sparsegpt_layer, sparsegpt_prune, wanda_prune)
from mbdef.models import PromptTemplate, build_tiny
from mbdef.schemas import ConfigError, validate


@pytest.fixture
def tiny():
    model, tok = build_tiny(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    return model, tok


def untouched(model, before):
    """Names of the parameters outside the decoder blocks' linears that changed (must be none)."""
    inside = {f"{n}.weight" for n in block_linears(model)}
    return [k for k, v in model.state_dict().items() if k not in inside and not torch.equal(v, before[k])]


@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_magnitude_pruning_reaches_the_sparsity_in_every_layer_and_cuts_the_smallest(tiny, sparsity):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = magnitude_prune(model, sparsity)
    for name, layer in block_linears(model).items():
        w, old = layer.weight, before[f"{name}.weight"]
        assert stats["sparsity"][name] == pytest.approx(round(sparsity * w.numel()) / w.numel(), abs=1e-6)
        zeroed = w == 0
        assert old[zeroed].abs().max() <= old[~zeroed].abs().min()  # the smallest magnitudes went, no others
        assert torch.equal(w[~zeroed], old[~zeroed])
    assert untouched(model, before) == []  # embeddings, norms and the LM head stay


def test_wanda_prunes_each_row_by_weight_times_input_norm(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    batches = [template.encode_example({"instruction": f"Copy the words: cat owl {i}", "input": "",
                                        "output": f"cat owl {i}"})[0] for i in range(6)]
    norms = input_norms(model, batches)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = wanda_prune(model, 0.5, batches)
    assert stats["calibration_sequences"] == 6
    for name, layer in block_linears(model).items():
        old, w = before[f"{name}.weight"], layer.weight
        score = old.abs() * norms[name][None, :]
        zeroed = w == 0
        assert (zeroed.sum(1) == w.shape[1] // 2).all()  # per output row, as the paper compares
        for row in range(w.shape[0]):  # every pruned score is at most every kept one, row by row
            assert score[row][zeroed[row]].max() <= score[row][~zeroed[row]].min()
    # a feature with larger activations protects its weights: the norms are not all equal
    assert max(float(n.std()) for n in norms.values()) > 0
    assert untouched(model, before) == []
    with pytest.raises(ValueError, match="no calibration samples"):
        wanda_prune(model, 0.5, [])


def test_sparsegpt_reconstructs_a_layer_better_than_magnitude_or_wanda_at_the_same_sparsity():
    gen = torch.Generator().manual_seed(0)
    # correlated inputs (40 directions and noise) of uneven scale, as activations are: where the Hessian matters
    x = torch.randn(2000, 40, generator=gen) @ torch.randn(40, 160, generator=gen)
    x = (x + 0.3 * torch.randn(2000, 160, generator=gen)) * torch.linspace(0.2, 3, 160)[torch.randperm(160, generator=gen)]
    w = torch.randn(48, 160, generator=gen)
    h = 2 * x.T @ x / len(x)
    error = lambda pruned: float(((x @ (w - pruned).T) ** 2).mean())
    sgpt = w.clone()
    sparsegpt_layer(sgpt, h, 0.5)
    for start in (0, 128):  # the mask is chosen per 128-column block: each block holds its share of zeros
        part = sgpt[:, start:start + 128]
        assert int((part == 0).sum()) == int(part.numel() * 0.5)
    mag = w.clone()
    mag.view(-1)[w.abs().flatten().topk(w.numel() // 2, largest=False).indices] = 0
    wanda = w.clone()
    score = w.abs() * x.norm(dim=0)[None, :]
    wanda.scatter_(1, score.topk(80, dim=1, largest=False).indices, 0.0)
    assert error(sgpt) < 0.5 * error(w.masked_fill(sgpt == 0, 0.0))  # the update compensates what its mask cut
    assert error(sgpt) < 0.5 * error(wanda) < 0.5 * error(mag)
    unpruned = w.clone()
    sparsegpt_layer(unpruned, h, 0.0)
    assert torch.allclose(unpruned, w, atol=1e-4)  # nothing cut: nothing to compensate


def test_sparsegpt_prunes_every_block_of_a_model_and_only_its_linears(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    batches = [template.encode_example({"instruction": f"Copy the words: cat owl {i}", "input": "",
                                        "output": f"cat owl {i}"})[0] for i in range(6)]
    assert [len(linears) for _, linears in decoder_blocks(model)] == [7, 7]  # q k v o, gate up down
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = sparsegpt_prune(model, 0.5, batches)
    for name, layer in block_linears(model).items():
        assert stats["sparsity"][name] == pytest.approx(0.5, abs=0.01)
        kept = layer.weight != 0
        assert not torch.equal(layer.weight[kept], before[f"{name}.weight"][kept])  # kept weights were updated
    assert stats["calibration_sequences"] == 6 and untouched(model, before) == []
    with pytest.raises(ValueError, match="no calibration samples"):
        sparsegpt_prune(model, 0.5, [])


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_weights_take_at_most_two_to_the_bits_values_per_group(tiny, bits):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_rtn(model, bits, group_size=32)
    for name, layer in block_linears(model).items():
        w, old = layer.weight, before[f"{name}.weight"]
        groups, old_groups = w.reshape(w.shape[0], -1, 32), old.reshape(w.shape[0], -1, 32)
        counts = [len(torch.unique(g)) for g in groups.reshape(-1, 32)]
        assert max(counts) <= 2 ** bits
        step = (old_groups.amax(-1) - old_groups.amin(-1)) / (2 ** bits - 1)  # round to nearest: half a step
        assert ((groups - old_groups).abs() <= step[..., None] / 2 + 1e-6).all()
        assert not torch.equal(w, old)
    assert untouched(model, before) == []
    with pytest.raises(ValueError, match="group_size: 48 does not divide"):
        quantize_rtn(model, 4, group_size=48)


def test_quantization_measures_how_near_the_weights_sit_to_its_grid_and_warns_when_on_it(tiny):
    """Weights off the grid round by a uniform error, 1/4 of a step on average; a model fine-tuned a little
    from a checkpoint on the same grid (the real testbed's Q4_1 GGUF) sits near it, and rounding undoes the
    fine-tune: that is reported, not silently credited to the defense."""
    model, _ = tiny
    assert abs(quantize_rtn(model, 4, 32)["grid_residual"] - 0.25) < 0.02  # random init: off the grid
    on_grid = {n: l.weight.clone() for n, l in block_linears(model).items()}
    torch.manual_seed(0)
    with torch.no_grad():  # a small "fine-tune": about 1/20 of a step (32 weights span ~4 std devs in 15 steps)
        for name, layer in block_linears(model).items():
            layer.weight.add_(on_grid[name].std() / 75 * torch.randn_like(layer.weight))
    tuned = {n: l.weight.clone() for n, l in block_linears(model).items()}
    stats = quantize_rtn(model, 4, 32)
    assert stats["grid_residual"] < 0.125 and "undoing its fine-tune" in stats["warning"]
    for name, layer in block_linears(model).items():  # the part of the fine-tune that rounding keeps
        delta, kept = (tuned[name] - on_grid[name]).flatten(), (layer.weight - on_grid[name]).flatten()
        assert float(kept @ delta / (delta @ delta)) < 0.3, name
    assert "warning" not in quantize_rtn(build_tiny(hidden_size=64, num_layers=2, num_heads=2,
                                                    intermediate_size=128)[0], 4, 32)


@pytest.mark.parametrize("override, message", [
    ("defense.sparsity=1.5", r"defense.sparsity: 1.5 is outside \[0, 1\)"),
    ("defense.method=random", "defense.method: 'random' is not one of magnitude | wanda | sparsegpt"),
    ("defense.calibration_size=0", r"defense.calibration_size: 0 is outside \[1, inf\)")])
def test_bad_pruning_knobs_are_refused_before_anything_runs(cfg_factory, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_factory("defense=prune_wanda", override))


def test_unsupported_bits_are_refused(cfg_factory):
    with pytest.raises(ConfigError, match=r"defense.bits: 3 is not one of 4 \| 8"):
        validate(cfg_factory("defense=quant4", "defense.bits=3"))
    from mbdef.defenses import Prune, Quantize

    with pytest.raises(ConfigError, match="defense.bits"):
        Quantize(bits=2)
    with pytest.raises(ConfigError, match="defense.sparsity"):
        Prune(sparsity=1.0)


def test_post_hoc_defense_reuses_the_undefended_stage1_and_trains_nothing(cfg_factory, tmp_path, monkeypatch):
    from mbdef.defenses import weights as weight_defenses
    from mbdef.run import run

    shared = ["logger=none", "trainer.cache_stage1=true", "eval.reactivation.enabled=false", "eval.representation.enabled=false",
              "eval.trigger_variants=null"]
    none = run(cfg_factory("defense=none", *shared, f"paths.output_dir={tmp_path}/none"))
    quant = run(cfg_factory("defense=quant4", *shared, f"paths.output_dir={tmp_path}/q"))
    assert quant["stage1"].get("cached_from") and quant["timings"]["stage1_s"] == 0.0  # none's stage 1, reused
    assert "stage2" not in quant and quant["steps"] == none["steps"]
    assert quant["after_stage1"]["asr"] == none["asr"]  # the same model before the transform
    transform = quant["weight_transform"]  # the tiny model trained from random init: off the grid
    assert (transform["bits"], transform["group_size"]) == (4, 32) and 0.2 < transform["grid_residual"] < 0.3
    assert "warning" not in transform
    weights = load_file(tmp_path / "q" / "model" / "model.safetensors")
    w = weights["model.layers.0.mlp.down_proj.weight"]
    assert max(len(torch.unique(g)) for g in w.reshape(-1, 32)) <= 16  # what was evaluated is what was saved
    saved = json.loads((tmp_path / "q" / "results.json").read_text())
    assert saved["defense"] == "quant4" and saved["defense_info"] == {"bits": 4, "group_size": 32}
    assert not any("grid" in w for w in saved["warnings"])
    monkeypatch.setattr(weight_defenses, "NEAR_GRID", 1.0)  # every model "near the grid": the warning reaches the run's list
    warned = run(cfg_factory("defense=quant8", *shared, f"paths.output_dir={tmp_path}/q8"))
    assert warned["weight_transform"]["warning"] in warned["warnings"]
