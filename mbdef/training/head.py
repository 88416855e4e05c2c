"""SFTTrainer whose LM head, on devices without Triton (CPU), runs on the response tokens only.

TRL's fused LM head (trl.trainer.utils.add_fused_lm_head) never builds the [tokens, vocab] logits. On a
CUDA device it scores only the positions with a label; elsewhere it scores every position (prompt tokens
included), recomputes each vocabulary tile in the backward pass and folds entropy and top-1 statistics in
torch ops. On SmolLM2 (vocabulary 49,152) that made a CPU step 1.28x a plain PyTorch loop's
(docs/benchmarks.md). Here the head projects only the positions whose next token is a response token, once,
through autograd: the same loss (mean negative log-likelihood of the response tokens, divided by
`num_items_in_batch` when the Trainer passes it) and the same logged metrics, checked against TRL's own
compute_loss in tests/test_head.py. Every other case (CUDA, PEFT prompt learning, MoE auxiliary loss, label
smoothing, DFT, several processes) goes to TRL's path unchanged.

TRL's deprecation note for `compute_loss_func` asks for exactly this: subclass SFTTrainer and override
compute_loss.
"""

from __future__ import annotations

import torch
from trl import SFTTrainer
from trl.kernels.chunked_logprob import _use_triton

from mbdef.models.heads import causal_lm, logits_at


class ResponseHeadSFTTrainer(SFTTrainer):
    """`extra_loss`: (model, batch) -> (term, {name: value}), added to the training loss and logged beside it."""

    def __init__(self, *args, extra_loss=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_loss = extra_loss
        self.extra_names: set[str] = set()  # what extra_loss logged, for the stage summary

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = self.language_model_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.extra_loss is None or not model.training:
            return out
        term, logged = self.extra_loss(model, inputs)
        for name, value in logged.items():
            self._metrics["train"][name].append(value)
            self.extra_names.add(name)
        return (out[0] + term, out[1]) if return_outputs else out + term

    def _response_head_applies(self, model) -> bool:
        lm = causal_lm(model)
        return (lm is not None and not _use_triton(next(lm.parameters()).device) and self.accelerator.num_processes == 1
                and not self.aux_loss_enabled and self.label_smoother is None and self.compute_loss_func is None
                and self.args.loss_type == "nll")

    def language_model_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._response_head_applies(model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if model.training else "eval"
        labels = inputs["labels"][:, 1:]
        mask = labels != -100
        where = torch.nn.functional.pad(mask, (0, 1))  # position t predicts token t + 1
        logits = logits_at(model, where, **{k: v for k, v in inputs.items() if k != "labels"}).float()
        log_probs = logits.log_softmax(-1)
        targets = labels[mask]
        nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        n_valid = mask.sum()
        denominator = n_valid if num_items_in_batch is None else num_items_in_batch
        loss = nll.sum() / torch.as_tensor(denominator).clamp(min=1)

        with torch.no_grad():  # the metrics TRL logs, on the same positions
            valid = max(int(n_valid), 1)
            entropy = -(log_probs.exp() * log_probs).sum(-1).sum().item() / valid
            accuracy = (logits.argmax(-1) == targets).sum().item() / valid
        self._metrics[mode]["entropy"].append(entropy if n_valid else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(accuracy if n_valid else 0.0)
        if mode == "train":
            n_tokens = (inputs["attention_mask"].sum() if "attention_mask" in inputs
                        else inputs["position_ids"].size(1))
            self._total_train_tokens += int(n_tokens) // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
