"""Weight-space defenses of the peer benchmark (BackdoorLLM's DefenseBox): pruning and quantization of the
trained model, applied after stage 1 (and before an optional clean fine-tune as stage 2). They train nothing
of their own, so they share the undefended model's stage 1.

- Magnitude pruning: in every linear layer of the decoder blocks, the `sparsity` fraction of weights with the
  smallest |w| is set to zero (per layer).
- Wanda (Sun et al., ICLR 2024, "A Simple and Effective Pruning Approach for LLMs"): the score of a weight is
  |w_ij| * ||x_j||_2, the input feature's activation norm over calibration tokens (the defender's clean
  pool, through the training template); each output row loses its `sparsity` fraction of lowest scores.
- Round-to-nearest quantization: every linear weight of the decoder blocks, in groups of `group_size`
  consecutive inputs per output row, is mapped to 2^bits levels between the group's min and max
  (asymmetric), then back to floats, so the model keeps running in its own dtype.

Embeddings and the LM head are left as they are, as both papers do.
"""

from __future__ import annotations

import torch
from torch import nn

from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.schemas import check_values
from mbdef.schemas.defense import PruneConfig, QuantizeConfig


def block_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers inside the decoder blocks (attention and MLP projections), by module name."""
    found = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in f".{n}"}
    if not found:
        raise ValueError("defense: the model has no linear layers inside decoder blocks (`...layers.N...`) to "
                         "prune or quantize")
    return found


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float) -> dict:
    for layer in block_linears(model).values():
        w = layer.weight
        k = int(round(sparsity * w.numel()))
        if k:
            w.view(-1)[w.abs().flatten().topk(k, largest=False).indices] = 0.0
    return {"sparsity": measured_sparsity(model)}


@torch.no_grad()
def input_norms(model: nn.Module, batches: list[list[int]]) -> dict[str, torch.Tensor]:
    """||x_j||_2 over every calibration token, per input feature of each block linear (one sequence at a time,
    so no padding enters the norms)."""
    layers, sq = block_linears(model), {}
    hooks = [layer.register_forward_hook(
        lambda mod, inp, out, name=name: sq.__setitem__(
            name, sq.get(name, 0) + inp[0].detach().float().pow(2).reshape(-1, inp[0].shape[-1]).sum(0)))
        for name, layer in layers.items()]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for ids in batches:
            model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {name: v.sqrt() for name, v in sq.items()}


@torch.no_grad()
def wanda_prune(model: nn.Module, sparsity: float, batches: list[list[int]]) -> dict:
    if not batches:
        raise ValueError("defense (prune_wanda): no calibration samples (defense.calibration_size)")
    norms = input_norms(model, batches)
    for name, layer in block_linears(model).items():
        w = layer.weight
        k = int(round(sparsity * w.shape[1]))  # per output row, as the paper compares
        if k:
            score = w.abs().float() * norms[name].to(w.device)[None, :]
            idx = score.topk(k, dim=1, largest=False).indices
            w.scatter_(1, idx, 0.0)
    return {"sparsity": measured_sparsity(model), "calibration_sequences": len(batches)}


def measured_sparsity(model: nn.Module) -> dict[str, float]:
    """The fraction of zero weights, per block linear."""
    return {n: round(float((m.weight == 0).float().mean()), 6) for n, m in block_linears(model).items()}


@torch.no_grad()
def quantize_rtn(model: nn.Module, bits: int, group_size: int) -> dict:
    levels = 2 ** bits - 1
    for layer in block_linears(model).values():
        w = layer.weight
        rows, cols = w.shape
        if cols % group_size:
            raise ValueError(f"defense.group_size: {group_size} does not divide the layer's {cols} inputs")
        g = w.float().reshape(rows, cols // group_size, group_size)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / levels).clamp(min=1e-12)
        q = torch.clamp(torch.round((g - lo) / scale), 0, levels)
        w.copy_((q * scale + lo).reshape(rows, cols).to(w.dtype))
    return {"bits": bits, "group_size": group_size}


class Prune(Defense):
    """Magnitude or Wanda pruning of the stage-1 model at `sparsity`; `finetune`: then the clean fine-tune
    of stage 2 (the same budget and rows as `finetune`)."""

    name = "prune"

    def __init__(self, method: str = PruneConfig.method, sparsity: float = PruneConfig.sparsity,
                 finetune: bool = PruneConfig.finetune, clean_size: int = PruneConfig.clean_size,
                 calibration_size: int = PruneConfig.calibration_size, seed: int = 0):
        check_values(PruneConfig, "defense.", method=method, sparsity=sparsity, clean_size=clean_size,
                     calibration_size=calibration_size)
        self.method, self.sparsity, self.finetune = method, sparsity, finetune
        self.clean_size, self.calibration_size, self.seed = clean_size, calibration_size, seed

    def plan(self, train, defense_pool):
        clean = sample_clean(defense_pool, max(self.clean_size, self.calibration_size), self.seed)
        calibration = clean[:self.calibration_size] if self.method == "wanda" else []
        if self.method == "wanda":
            transform = lambda model, batches: wanda_prune(model, self.sparsity, batches)
        else:
            transform = lambda model, batches: magnitude_prune(model, self.sparsity)
        stage2 = clean[:self.clean_size] if self.finetune else None
        return TrainingPlan(stage1=list(train), stage2=stage2, weight_transform=transform, calibration=calibration,
                            details={"method": self.method, "sparsity": self.sparsity, "finetune": self.finetune,
                                     "n_calibration": len(calibration)})


class Quantize(Defense):
    """Round-to-nearest weight quantization of the stage-1 model (no training)."""

    name = "quantize"

    def __init__(self, bits: int = QuantizeConfig.bits, group_size: int = QuantizeConfig.group_size, seed: int = 0):
        check_values(QuantizeConfig, "defense.", bits=bits, group_size=group_size)
        self.bits, self.group_size, self.seed = bits, group_size, seed

    def plan(self, train, defense_pool):
        return TrainingPlan(stage1=list(train),
                            weight_transform=lambda model, batches: quantize_rtn(model, self.bits, self.group_size),
                            details={"bits": self.bits, "group_size": self.group_size})
