"""Weight-space defenses of the peer benchmark (BackdoorLLM's DefenseBox): pruning and quantization of the
trained model, applied after stage 1 (and before an optional clean fine-tune as stage 2). They train nothing
of their own, so they share the undefended model's stage 1.

- Magnitude pruning: in every linear layer of the decoder blocks, the `sparsity` fraction of weights with the
  smallest |w| is set to zero (per layer).
- Wanda (Sun et al., ICLR 2024, "A Simple and Effective Pruning Approach for LLMs"): the score of a weight is
  |w_ij| * ||x_j||_2, the input feature's activation norm over calibration tokens (the defender's clean
  pool, through the training template); each output row loses its `sparsity` fraction of lowest scores.
- SparseGPT (Frantar & Alistarh, ICML 2023, "Massive Language Models Can Be Accurately Pruned in One-Shot"):
  block by block, with the inputs of the blocks already pruned, each linear layer's Hessian H = X X^T over
  the calibration tokens chooses the mask (lowest w^2 / [H^-1]_jj within each 128-column block) and the
  optimal-brain-surgeon update of the kept weights that compensates for the pruned ones.
- Round-to-nearest quantization: every linear weight of the decoder blocks, in groups of `group_size`
  consecutive inputs per output row, is mapped to 2^bits levels between the group's min and max
  (asymmetric), then back to floats, so the model keeps running in its own dtype. It reports how far the
  weights sat from that grid before rounding (`grid_residual`, the mean distance in steps: about 0.25 for
  weights off the grid) and warns when they sat near it: a model fine-tuned from a checkpoint quantized on
  the same grid (SmolLM2 from its Q4_1 GGUF, groups of 32) is then rounded back towards that checkpoint,
  which undoes most of the fine-tune, backdoor included: a shortcut that full-precision weights do not offer.

Embeddings and the LM head are left as they are, as both papers do.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.schemas import check_values
from mbdef.schemas.defense import PruneConfig, QuantizeConfig

log = logging.getLogger("mbdef")
# Rounding error of weights off the grid is uniform on [-1/2, 1/2] steps: mean 1/4. Below half of that the
# weights were (nearly) on the grid already.
NEAR_GRID = 0.125


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


class _BlockDone(Exception):
    """Raised by a hook after the block being calibrated, so the rest of the forward pass is skipped."""


def decoder_blocks(model: nn.Module) -> list[tuple[nn.Module, dict[str, nn.Linear]]]:
    """The decoder blocks in order (the modules named `...layers.N`), each with its linear layers."""
    linears, blocks = block_linears(model), {}
    for name, module in model.named_modules():
        head, _, index = name.rpartition(".")
        if head.endswith("layers") and index.isdigit():
            blocks[name] = (module, {n: m for n, m in linears.items() if n.startswith(f"{name}.")})
    return list(blocks.values())


@torch.no_grad()
def sparsegpt_layer(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, block: int = 128,
                    damping: float = 0.01) -> None:
    """Prune one weight matrix in place to `sparsity` (Algorithm 1 of the paper; the reference code's damping
    of 1 % of the mean diagonal and its 128-column mask blocks)."""
    w, h = weight.float().clone(), hessian.float().clone()
    cols = w.shape[1]
    dead = torch.diag(h) == 0  # an input that never fired: its weights cannot matter to the calibration
    h[dead, dead], w[:, dead] = 1.0, 0.0
    h += damping * torch.mean(torch.diag(h)) * torch.eye(cols, device=h.device)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    for start in range(0, cols, block):
        end = min(start + block, cols)
        w1, hinv1 = w[:, start:end].clone(), hinv[start:end, start:end]
        err = torch.zeros_like(w1)
        score = w1 ** 2 / torch.diag(hinv1)[None, :] ** 2
        k = int(score.numel() * sparsity)
        mask = torch.zeros_like(w1, dtype=torch.bool)
        if k:
            mask.view(-1)[score.flatten().topk(k, largest=False).indices] = True
        for i in range(end - start):
            col = w1[:, i]
            kept = col.masked_fill(mask[:, i], 0.0)
            err[:, i] = (col - kept) / hinv1[i, i]
            w1[:, i:] -= err[:, i:i + 1] @ hinv1[i:i + 1, i:]
            w1[:, i] = kept
        w[:, start:end] = w1
        w[:, end:] -= err @ hinv[start:end, end:]
    weight.copy_(w.to(weight.dtype))


@torch.no_grad()
def sparsegpt_prune(model: nn.Module, sparsity: float, batches: list[list[int]]) -> dict:
    if not batches:
        raise ValueError("defense (prune_sparsegpt): no calibration samples (defense.calibration_size)")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for block, linears in decoder_blocks(model):
            hessians, tokens = {}, {}

            def accumulate(mod, inp, out, name):
                x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
                hessians[name] = hessians.get(name, 0) + x.T @ x
                tokens[name] = tokens.get(name, 0) + x.shape[0]

            def stop(mod, inp, out):
                raise _BlockDone

            hooks = [m.register_forward_hook(lambda mod, inp, out, name=n: accumulate(mod, inp, out, name))
                     for n, m in linears.items()] + [block.register_forward_hook(stop)]
            try:
                for ids in batches:  # one sequence at a time: no padding enters the Hessians
                    try:
                        model(input_ids=torch.tensor([ids], device=device), use_cache=False)
                    except _BlockDone:
                        pass
            finally:
                for hook in hooks:
                    hook.remove()
            for name, layer in linears.items():
                sparsegpt_layer(layer.weight, 2 * hessians[name] / tokens[name], sparsity)
    finally:
        model.train(was_training)
    return {"sparsity": measured_sparsity(model), "calibration_sequences": len(batches)}


def measured_sparsity(model: nn.Module) -> dict[str, float]:
    """The fraction of zero weights, per block linear."""
    return {n: round(float((m.weight == 0).float().mean()), 6) for n, m in block_linears(model).items()}


@torch.no_grad()
def quantize_rtn(model: nn.Module, bits: int, group_size: int) -> dict:
    levels, residual, n = 2 ** bits - 1, 0.0, 0
    for layer in block_linears(model).values():
        w = layer.weight
        rows, cols = w.shape
        if cols % group_size:
            raise ValueError(f"defense.group_size: {group_size} does not divide the layer's {cols} inputs")
        g = w.float().reshape(rows, cols // group_size, group_size)
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = ((hi - lo) / levels).clamp(min=1e-12)
        x = (g - lo) / scale
        residual, n = residual + float((x - torch.round(x)).abs().sum()), n + x.numel()
        q = torch.clamp(torch.round(x), 0, levels)
        w.copy_((q * scale + lo).reshape(rows, cols).to(w.dtype))
    out = {"bits": bits, "group_size": group_size, "grid_residual": round(residual / max(n, 1), 4)}
    if out["grid_residual"] < NEAR_GRID:
        out["warning"] = (f"the weights sat {out['grid_residual']} steps from the {bits}-bit grid of groups of "
                          f"{group_size} before rounding (about 0.25 off the grid): they come from a checkpoint "
                          f"quantized on this grid, and rounding returns the model towards it, undoing its "
                          f"fine-tune; another group_size avoids the shortcut")
        log.warning("defense quantize: %s", out["warning"])
    return out


class Prune(Defense):
    """Magnitude, Wanda or SparseGPT pruning of the stage-1 model at `sparsity`; `finetune`: then the clean fine-tune
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
        calibrated = {"wanda": wanda_prune, "sparsegpt": sparsegpt_prune}.get(self.method)
        calibration = clean[:self.calibration_size] if calibrated else []
        if calibrated:
            transform = lambda model, batches: calibrated(model, self.sparsity, batches)
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
