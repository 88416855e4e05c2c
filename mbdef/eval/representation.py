"""Do attacker and defender triggers share one representation? Hidden-state evidence for merging.

For a set of clean prompts and triggered copies of them, the shift a trigger induces is
`h(triggered) - h(clean)` at the last prompt token, per layer (embeddings = layer 0). Merging predicts the
attacker's mean shift points the same way as the defensive triggers' mean shifts (cosine near 1) more
than it does on a model without defensive poisoning, and more than a random control word's shift does.
A linear probe trained to tell defensive-triggered from clean states, applied to attacker-triggered
states, gives the same evidence in another form: the fraction of attacker prompts it calls "triggered".
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mbdef.models.batching import eval_mode, left_pad, pad_id
from mbdef.models.heads import hidden_states
from mbdef.models.template import PromptTemplate


@torch.no_grad()
def last_token_states(model, tokenizer, template: PromptTemplate, records: list[dict], batch_size: int = 64) -> np.ndarray:
    """[n_prompts, n_layers + 1, hidden] hidden states at each prompt's last token (left padding)."""
    out = []
    with eval_mode(model) as device:
        for i in range(0, len(records), batch_size):
            ids, mask = left_pad([template.encode_prompt(r) for r in records[i:i + batch_size]], pad_id(tokenizer))
            hs = hidden_states(model, ids.to(device), mask.to(device))
            out.append(torch.stack([h[:, -1, :] for h in hs], dim=1).float().cpu().numpy())
    return np.concatenate(out)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _probe_rates(pos: np.ndarray, neg: np.ndarray, tests: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """Fit triggered (pos) vs clean (neg); the fraction of each test set classified as triggered."""
    if len(np.unique(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))) < 2:
        return {}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced", random_state=seed))
    clf.fit(np.concatenate([pos, neg]), np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
    return {name: float(clf.predict(x).mean()) for name, x in tests.items()}


def analyse(model, tokenizer, template: PromptTemplate, clean: list[dict], attacker: list[dict],
            defensive: dict[str, list[dict]], control: list[dict], batch_size: int = 64, seed: int = 0) -> dict:
    """Per-layer cosine similarities and probe rates. `defensive`: trigger -> triggered copies of `clean`;
    `attacker` and `control` (a random word) are triggered copies of `clean` in the same order."""
    states = lambda rs: last_token_states(model, tokenizer, template, rs, batch_size)
    h_clean, h_att, h_ctrl = states(clean), states(attacker), states(control)
    h_def = {t: states(rs) for t, rs in defensive.items()}
    n_layers = h_clean.shape[1]
    shift = lambda h: (h - h_clean).mean(axis=0)  # [layers, hidden]
    s_att, s_ctrl = shift(h_att), shift(h_ctrl)
    s_def = {t: shift(h) for t, h in h_def.items()}
    out = {"layers": list(range(n_layers)), "n_prompts": len(clean), "defensive_triggers": list(defensive),
           "cos_attacker_control": [_cos(s_att[l], s_ctrl[l]) for l in range(n_layers)]}
    if s_def:
        per = {t: [_cos(s_att[l], s[l]) for l in range(n_layers)] for t, s in s_def.items()}
        out["cos_attacker_defensive_each"] = per
        out["cos_attacker_defensive"] = [float(np.mean([p[l] for p in per.values()])) for l in range(n_layers)]
        out["cos_control_defensive"] = [float(np.mean([_cos(s_ctrl[l], s[l]) for s in s_def.values()]))
                                        for l in range(n_layers)]
        # Probe on the last layer and the middle one: "triggered" = any defensive trigger.
        half = len(clean) // 2  # fit on the first half of the prompts, test on the other half
        probe = {}
        for l in sorted({n_layers // 2, n_layers - 1}):
            pos = np.concatenate([h[:half, l] for h in h_def.values()])
            rates = _probe_rates(pos, h_clean[:half, l], {
                "attacker": h_att[half:, l], "control": h_ctrl[half:, l], "clean": h_clean[half:, l],
                "defensive": np.concatenate([h[half:, l] for h in h_def.values()])}, seed)
            probe[str(l)] = rates
        out["probe"] = probe
    return out
