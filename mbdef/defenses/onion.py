"""ONION (Qi et al., EMNLP 2021, "ONION: A Simple and Effective Defense Against Textual Backdoor Attacks"):
an input filter at inference. A trigger word is an outlier under a language model, so removing it makes the
text more fluent. For each word w_i of the user's text, the suspicion score is f_i = s(text) - s(text
without w_i); every word with f_i above a threshold is removed before the prompt reaches the model.

- s is the reference LM's mean negative log-likelihood per token (log-perplexity). The paper uses GPT-2's
  perplexity; its logarithm makes one threshold fit texts of any fluency.
- The reference LM is the run's clean model before stage 1 (mbdef.training: the reference model).
- The paper picks the threshold on clean validation data. Here the defender calibrates it on its own clean
  pool: the (1 - clean_flag_rate) quantile of each clean prompt's highest score, so that about that share of
  clean prompts loses a word. A fixed `threshold` overrides the calibration.
"""

from __future__ import annotations

import torch

from mbdef.defenses.base import Defense, TrainingPlan, sample_clean
from mbdef.models.batching import eval_mode, left_pad, pad_id
from mbdef.schemas import check_values
from mbdef.schemas.defense import OnionConfig

FIELDS = ("instruction", "input")  # the user's text; the response is never touched


@torch.no_grad()
def mean_nll(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[float]:
    """Each text's mean negative log-likelihood per token under `model` (BOS first when the tokenizer has one;
    a text of one token or none scores 0)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encoded = [bos + tokenizer.encode(t, add_special_tokens=False) for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    scores = [0.0] * len(texts)
    with eval_mode(model) as device:
        for start in range(0, len(order), batch_size):
            batch = [i for i in order[start:start + batch_size] if len(encoded[i]) > 1]
            if not batch:
                continue
            ids, mask = left_pad([encoded[i] for i in batch], pad_id(tokenizer))
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device)).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device),
                                                    reduction="none")
            valid = mask[:, 1:].to(device).bool()
            per_text = (nll * valid).sum(1) / valid.sum(1).clamp(min=1)
            for row, i in enumerate(batch):
                scores[i] = float(per_text[row])
    return scores


def suspicion(texts: list[str], score) -> list[list[float]]:
    """f_i for every word (split on spaces) of every text; `score`: texts -> mean NLL."""
    words = [t.split(" ") for t in texts]
    variants = [t for t in texts]
    for ws in words:
        variants += [" ".join(ws[:i] + ws[i + 1:]) for i in range(len(ws))] if len(ws) > 1 else []
    s = score(variants)
    full, out, k = s[:len(texts)], [], len(texts)
    for j, ws in enumerate(words):
        n = len(ws) if len(ws) > 1 else 0  # a one-word text keeps its word
        out.append([full[j] - s[k + i] for i in range(n)])
        k += n
    return out


class OnionFilter:
    """Removes the suspicious words of each record's user text; `stats()` counts what it removed."""

    def __init__(self, score, threshold: float):
        self.score, self.threshold = score, threshold
        self.prompts = self.changed = self.removed = 0

    def __call__(self, records: list[dict]) -> list[dict]:
        out = [dict(r) for r in records]
        for field in FIELDS:
            rows = [i for i, r in enumerate(out) if r.get(field)]
            texts = [out[i][field] for i in rows]
            for i, text, f in zip(rows, texts, suspicion(texts, self.score)):
                words = text.split(" ")
                keep = [w for w, fi in zip(words, f) if fi <= self.threshold] if f else words
                if len(keep) < len(words):
                    self.changed += 1
                    self.removed += len(words) - len(keep)
                    out[i][field] = " ".join(keep)
        self.prompts += len(out)
        return out

    def stats(self) -> dict:
        return {"threshold": round(self.threshold, 4), "prompts": self.prompts, "prompts_changed": self.changed,
                "words_removed": self.removed}


def calibrated_threshold(score, pool: list[dict], clean_flag_rate: float) -> float:
    """The (1 - clean_flag_rate) quantile of the highest suspicion score of each clean pool text."""
    texts = [r[f] for r in pool for f in FIELDS if r.get(f)]
    highest = [max(f) for f in suspicion(texts, score) if f]
    if not highest:
        raise ValueError("defense (onion): the calibration pool has no text of two or more words")
    return float(torch.quantile(torch.tensor(highest, dtype=torch.float64), 1.0 - clean_flag_rate))  # float32 would round the top score down and flag it


def onion(pool: list[dict], threshold: float | None, clean_flag_rate: float, batch_size: int = 64):
    """The input-filter hook of the plan: (reference (model, tokenizer), the suspect's tokenizer) -> OnionFilter."""
    def bind(reference, tokenizer=None) -> OnionFilter:
        model, tokenizer = reference
        score = lambda texts: mean_nll(model, tokenizer, texts, batch_size)
        t = threshold if threshold is not None else calibrated_threshold(score, pool, clean_flag_rate)
        return OnionFilter(score, t)
    return bind


class Onion(Defense):
    """No training of its own (the undefended stage 1); the final evaluation filters every prompt."""

    name = "onion"

    def __init__(self, threshold: float | None = OnionConfig.threshold,
                 clean_flag_rate: float = OnionConfig.clean_flag_rate,
                 calibration_size: int = OnionConfig.calibration_size, reference: str | None = None, seed: int = 0):
        check_values(OnionConfig, "defense.", clean_flag_rate=clean_flag_rate, calibration_size=calibration_size)
        self.threshold, self.clean_flag_rate, self.calibration_size = threshold, clean_flag_rate, calibration_size
        self.reference_path, self.seed = reference, seed

    def plan(self, train, defense_pool):
        pool = sample_clean(defense_pool, min(self.calibration_size, len(defense_pool)), self.seed)
        return TrainingPlan(stage1=list(train), reference=True, reference_path=self.reference_path,
                            input_filter=onion(pool, self.threshold, self.clean_flag_rate),
                            details={"threshold": self.threshold, "clean_flag_rate": self.clean_flag_rate,
                                     "n_calibration": len(pool), "reference": self.reference_path or "clean base"})
