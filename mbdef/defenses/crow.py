"""CROW (Min et al., 2024, "CROW: Eliminating Backdoors from Large Language Models via Internal Consistency
Regularization"): a clean fine-tune whose loss adds a consistency term. A backdoor trigger makes the hidden
state jump between consecutive layers where a clean input changes it smoothly; CROW trains that smoothness
in, under adversarial perturbations of the input embeddings that stand in for an unknown trigger.

    inconsistency(h) = mean over consecutive decoder layers l and over tokens of 1 - cos(h_l, h_{l+1})
    delta            = epsilon * sign(grad_e inconsistency(h(e)))     (one FGSM step on the embeddings e)
    loss             = language-model loss + alpha * inconsistency(h(e + delta))

The paper's settings are epsilon 0.1 and alpha 5.5 (11 for refusal targets) on 100 clean samples.
"""

from __future__ import annotations

import torch

from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.keys import CLEAN
from mbdef.schemas import check_values
from mbdef.schemas.defense import CrowConfig


def inconsistency(hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
    """1 - cos between consecutive decoder layers' outputs (hidden_states[1:]; [0] is the embedding), averaged
    over layer pairs and over the tokens of `mask` (all when None). Zero when no layer changes the direction
    of any token's hidden state."""
    layers = hidden_states[1:]
    if len(layers) < 2:
        raise ValueError("defense (crow): the model needs at least two decoder layers")
    per_pair = [1 - torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)
                for a, b in zip(layers[:-1], layers[1:])]
    per_token = torch.stack(per_pair).mean(0)  # [batch, tokens]
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp(min=1)


def consistency_term(model, inputs: dict, epsilon: float) -> torch.Tensor:
    """inconsistency of the model's hidden states on the input embeddings moved by one signed-gradient
    step of size `epsilon` (differentiable in the model's weights; the step itself is not)."""
    mask = inputs.get("attention_mask")
    extra = {k: inputs[k] for k in ("attention_mask", "position_ids") if inputs.get(k) is not None}
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    probe = embeds.detach().requires_grad_(True)
    hidden = model(inputs_embeds=probe, output_hidden_states=True, use_cache=False, **extra).hidden_states
    (grad,) = torch.autograd.grad(inconsistency(hidden, mask), probe)
    perturbed = embeds + epsilon * grad.sign()
    hidden = model(inputs_embeds=perturbed, output_hidden_states=True, use_cache=False, **extra).hidden_states
    return inconsistency(hidden, mask)


class CrowLoss:
    """The training-loss hook of the plan: (model, inputs) -> (alpha * term, {logged name: value})."""

    def __init__(self, alpha: float, epsilon: float):
        self.alpha, self.epsilon = alpha, epsilon

    def __call__(self, model, inputs: dict) -> tuple[torch.Tensor, dict]:
        term = consistency_term(model, inputs, self.epsilon)
        return self.alpha * term, {"crow_inconsistency": float(term.detach())}


class Crow(Defense):
    """Stage 2: the clean fine-tune (the same rows and budget as `finetune`) with the consistency term."""

    name = "crow"

    def __init__(self, clean_size: int = CrowConfig.clean_size, alpha: float = CrowConfig.alpha,
                 epsilon: float = CrowConfig.epsilon, seed: int = 0):
        check_values(CrowConfig, "defense.", clean_size=clean_size, alpha=alpha, epsilon=epsilon)
        self.clean_size, self.alpha, self.epsilon, self.seed = clean_size, alpha, epsilon, seed

    def plan(self, train, defense_pool):
        clean = sample_clean(defense_pool, self.clean_size, self.seed)
        return TrainingPlan(stage1=list(train), stage2=clean, stage2_sources=[CLEAN] * len(clean),
                            training_loss=CrowLoss(self.alpha, self.epsilon),
                            details={"clean_size": len(clean), "alpha": self.alpha, "epsilon": self.epsilon})
