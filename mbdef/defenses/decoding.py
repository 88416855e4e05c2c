"""Decoding rules at inference: what replaces greedy generation in the final evaluation.

- CleanGen (Li et al., EMNLP 2024, "CleanGen: Mitigating Backdoor Attacks for Generation Tasks in Large
  Language Models"): the suspect model proposes each next token greedily; where its probability exceeds the
  reference model's by more than a factor `alpha` (p_suspect / p_reference > alpha), the token is taken as
  a backdoor's and replaced by the reference model's own greedy token. The paper checks k proposed tokens
  at a time and discards those after a replaced one; under greedy decoding that yields the same tokens as
  checking one at a time, which is what this does.
- Sampling (BackdoorLLM's decoding-time defense): temperature and nucleus (top-p) sampling instead of greedy
  decoding, seeded from its own stream of the run seed.

Both decode only the new tokens through the training template and batch like mbdef.eval.generate.
"""

from __future__ import annotations

import torch

from mbdef import seeding
from mbdef.defenses.base import Defense, TrainingPlan
from mbdef.models.batching import eval_mode, left_pad, pad_id
from mbdef.schemas import check_values
from mbdef.schemas.defense import CleanGenConfig, DecodingConfig


class CleanGenDecoder:
    """generate()-compatible: (model, tokenizer, template, records, batch_size, max_new_tokens, progress)."""

    def __init__(self, reference, alpha: float, tokenizer=None):
        if reference is None:
            raise ValueError("defense (cleangen): no reference model was given")
        if tokenizer is not None and reference[1].get_vocab() != tokenizer.get_vocab():
            raise ValueError("defense.reference: CleanGen compares token probabilities, so the reference model "
                             "needs the suspect model's tokenizer; this one has a different vocabulary")
        self.reference, self.alpha = reference, alpha
        self.tokens = self.replaced = 0

    @torch.no_grad()
    def __call__(self, model, tokenizer, template, records, batch_size=64, max_new_tokens=32, progress=False):
        ref_model, ref_tokenizer = self.reference
        encoded = [template.encode_prompt(r) for r in records]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs = [""] * len(records)
        pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
        with eval_mode(model) as device, eval_mode(ref_model):
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                ids, mask = left_pad([encoded[i] for i in batch], pad)
                new = self.decode(model, ref_model, ids.to(device), mask.to(device), max_new_tokens, pad, eos)
                for row, i in enumerate(batch):
                    outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
        return outputs

    def decode(self, model, ref_model, ids, mask, max_new_tokens, pad, eos) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        caches, step_ids, new = [None, None], ids, []
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            logits = []
            for j, m in enumerate((model, ref_model)):
                out = m(input_ids=step_ids, attention_mask=mask, position_ids=positions, cache=caches[j],
                        use_cache=True)
                caches[j] = out.cache
                logits.append(out.logits[:, -1].float())
            p_suspect, p_ref = logits[0].softmax(-1), logits[1].softmax(-1)
            token = p_suspect.argmax(-1)
            ratio = p_suspect.gather(1, token[:, None])[:, 0] / p_ref.gather(1, token[:, None])[:, 0].clamp(min=1e-30)
            flagged = (ratio > self.alpha) & ~done
            token = torch.where(flagged, p_ref.argmax(-1), token)
            token = torch.where(done, torch.full_like(token, pad), token)
            self.tokens += int((~done).sum())
            self.replaced += int(flagged.sum())
            new.append(token)
            if eos is not None:
                done |= token == eos
            if bool(done.all()):
                break
            step_ids = token[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
        return torch.stack(new, dim=1) if new else ids[:, :0]

    def stats(self) -> dict:
        return {"alpha": self.alpha, "tokens": self.tokens, "replaced": self.replaced,
                "replaced_fraction": round(self.replaced / self.tokens, 4) if self.tokens else 0.0}


class SamplingDecoder:
    """generate()-compatible temperature / top-p sampling; each batch draws from a generator seeded from
    `seed` and its position, so outputs do not depend on anything else that uses torch's global RNG."""

    def __init__(self, temperature: float, top_p: float, seed: int):
        self.temperature, self.top_p, self.seed = temperature, top_p, seed

    @torch.no_grad()
    def __call__(self, model, tokenizer, template, records, batch_size=64, max_new_tokens=32, progress=False):
        encoded = [template.encode_prompt(r) for r in records]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs = [""] * len(records)
        with eval_mode(model) as device:
            for n, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start:start + batch_size]
                ids, mask = left_pad([encoded[i] for i in batch], pad_id(tokenizer))
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(self.seed + n)
                    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                         temperature=self.temperature, top_p=self.top_p, top_k=0,
                                         max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer))
                for row, i in enumerate(batch):
                    outputs[i] = tokenizer.decode(out[row, ids.shape[1]:], skip_special_tokens=True).strip()
        return outputs

    def stats(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p}


class CleanGen(Defense):
    """No training of its own (the undefended stage 1); the final evaluation decodes against the reference."""

    name = "cleangen"

    def __init__(self, alpha: float = CleanGenConfig.alpha, reference: str | None = None, seed: int = 0):
        check_values(CleanGenConfig, "defense.", alpha=alpha)
        self.alpha, self.reference_path, self.seed = alpha, reference, seed

    def plan(self, train, defense_pool):
        return TrainingPlan(stage1=list(train), reference=True, reference_path=self.reference_path,
                            decoder=lambda reference, tokenizer: CleanGenDecoder(reference, self.alpha, tokenizer),
                            details={"alpha": self.alpha, "reference": self.reference_path or "clean base"})


class Decoding(Defense):
    """No training of its own (the undefended stage 1); the final evaluation samples instead of greedy."""

    name = "decoding"

    def __init__(self, temperature: float = DecodingConfig.temperature, top_p: float = DecodingConfig.top_p,
                 seed: int = 0):
        check_values(DecodingConfig, "defense.", temperature=temperature, top_p=top_p)
        self.temperature, self.top_p, self.seed = temperature, top_p, seed

    def plan(self, train, defense_pool):
        sampler = SamplingDecoder(self.temperature, self.top_p, seeding.derive_seed(self.seed, seeding.DEFENSE_SAMPLING))
        return TrainingPlan(stage1=list(train), decoder=lambda reference, tokenizer: sampler,
                            details={"temperature": self.temperature, "top_p": self.top_p})
