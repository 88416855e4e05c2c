"""Paired comparisons: each defense against `finetune` and the controls, on the same seeds and prompts, and
a defense without a stage 2 of its own (inference-time, weight-space, PDB) also against `none`: what it
changed in the undefended model.

- The method test is at the seed level: a paired t-test (scipy.stats.ttest_rel) on the per-seed metric,
  "would another seed show the same difference?" (the exact sign-flip p where every seed differs alike).
  Its p-values are Holm-corrected across every comparison of the report (statsmodels' multipletests), and
  only the corrected p decides significance.
- McNemar is reported per seed, as a description of those fixed models ("do these two trained models differ
  on this test set?"), never pooled over seeds: pooling treats prompts of different seeds as independent
  draws and turns one divergent seed into a p-value of 1e-100.
A difference is marked not significant (n.s.) when the Holm-corrected seed-level p is ≥ ALPHA.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mbdef.keys import BASELINES

VERDICTS = {"asr": "attack_success", "cacc": "clean_correct"}
ALPHA = 0.05


def _seed_metric(members: list[dict], metric: str) -> dict:
    return {m["results"]["seed"]: m["results"][metric] for m in members
            if isinstance(m["results"].get(metric), (int, float))}


def _seed_bits(members: list[dict], metric: str) -> dict:
    out = {}
    for m in members:
        bits = (m["results"].get("per_example") or {}).get(VERDICTS[metric])
        if bits:
            out[m["results"]["seed"]] = np.frombuffer(bits.encode(), dtype=np.uint8) - ord("0")
    return out


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar p-value for paired 0/1 outcomes, with the two discordant counts."""
    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def paired_t_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test; None below 2 pairs; 1.0 when every pair is identical. When every seed shows
    the same non-zero difference the t statistic is undefined (no variance), and its limit p = 0 would claim
    certainty from, say, one prompt on two seeds; the exact sign-flip test's p = 2 / 2**n is given instead,
    the smallest p that n seed-level differences can give without a variance to lean on."""
    if len(a) < 2:
        return None
    d = np.asarray(a, float) - np.asarray(b, float)
    if np.allclose(d, d[0]):
        return 1.0 if np.isclose(d[0], 0.0) else 2.0 / 2 ** len(d)
    return float(stats.ttest_rel(a, b).pvalue)


def _is_baseline_for(baseline: str, members: list[dict]) -> bool:
    """finetune and the controls for every defense; `none` for one that trains no stage 2."""
    return baseline in BASELINES or (baseline == "none" and not any("stage2" in m["results"] for m in members))


def _compatible(run_a: dict, run_b: dict, knobs: list[str]) -> bool:
    """Same value for every swept `defense.*` knob both configs have (e.g. the same clean_size in a clean-size
    ablation). Knobs that are fixed per defense (a control's own settings) do not block the comparison."""
    ca, cb = run_a["config"], run_b["config"]
    shared = [k for k in knobs if k in ca and k in cb]
    return all(json.dumps(ca[k], default=str) == json.dumps(cb[k], default=str) for k in shared)


def split_knobs(knobs: list[str]) -> tuple[list[str], list[str]]:
    """(cell knobs, row knobs): keys outside `defense.` make separate experiments (cells), within which
    defenses and their own settings are compared (rows)."""
    return [k for k in knobs if not k.startswith("defense.")], [k for k in knobs if k.startswith("defense.")]


def paired_comparisons(runs: list[dict], knobs: list[str], metrics=("asr", "cacc")) -> list[dict]:
    cell_knobs, row_knobs = split_knobs(knobs)
    cells = defaultdict(lambda: defaultdict(list))
    for run in runs:
        r = run["results"]
        cell = (r.get("model"), r.get("attack"), *[run["config"].get(k) for k in cell_knobs])
        cells[cell][(r.get("defense"), *[run["config"].get(k) for k in row_knobs])].append(run)
    out = []
    for cell, rows in cells.items():
        for row_key, members in rows.items():
            for base_key, base in rows.items():
                if base_key == row_key or base_key[0] == row_key[0] or not _is_baseline_for(base_key[0], members):
                    continue
                if not _compatible(members[0], base[0], row_knobs):
                    continue
                for metric in metrics:
                    a, b = _seed_metric(members, metric), _seed_metric(base, metric)
                    seeds = sorted(set(a) & set(b))
                    if not seeds:
                        continue
                    ba, bb = _seed_bits(members, metric), _seed_bits(base, metric)
                    per_seed = {s: mcnemar_p(ba[s], bb[s]) for s in seeds
                                if s in ba and s in bb and len(ba[s]) == len(bb[s])}
                    p_seeds = paired_t_p([a[s] for s in seeds], [b[s] for s in seeds])
                    out.append({
                        "model": cell[0], "attack": cell[1], **dict(zip(cell_knobs, cell[2:])),
                        "defense": row_key[0], **dict(zip(row_knobs, row_key[1:])), "baseline": base_key[0],
                        "metric": metric, "seeds": seeds,
                        "delta": float(np.mean([a[s] - b[s] for s in seeds])),
                        "p_seeds": p_seeds, "test_seeds": "paired t-test over seeds",
                        "mcnemar_per_seed": {str(s): {"p": p, "discordant": [x, y]} for s, (p, x, y) in per_seed.items()},
                        "test_prompts": "exact McNemar per seed (describes those trained models)",
                    })
    holm(out)
    out.sort(key=lambda c: (str(c["model"]), str(c["attack"]), c["metric"], str(c["defense"]), c["baseline"]))
    return out


def holm(comparisons: list[dict]) -> None:
    """Add `p_holm` (Holm-corrected seed-level p across all `comparisons`) and `n_tests` to each."""
    tested = [c for c in comparisons if c["p_seeds"] is not None]
    if tested:
        corrected = multipletests([c["p_seeds"] for c in tested], method="holm")[1]
        for c, p in zip(tested, corrected):
            c["p_holm"], c["n_tests"] = float(p), len(tested)
    for c in comparisons:
        c.setdefault("p_holm", None)


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}"


def _sig(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}" + (" (n.s.)" if p >= ALPHA else "")


def _mcnemar(c: dict) -> str:
    per = c.get("mcnemar_per_seed") or {}
    return ", ".join(f"{s}: {v['p']:.2g}" for s, v in per.items()) or "-"


def paired_markdown(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    extra = sorted({k for c in comparisons for k in c if "." in k})
    head = ["model", "attack", *extra, "metric", "defense", "vs", "seeds", "Δ (defense − vs)",
            "p (paired t, seeds)", "p Holm", "McNemar p per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in comparisons:
        lines.append("| " + " | ".join([str(c["model"]), str(c["attack"]), *[str(c.get(k, "")) for k in extra],
                                         c["metric"].upper(), str(c["defense"]), c["baseline"],
                                         ",".join(map(str, c["seeds"])), f"{c['delta']:+.3f}",
                                         _p(c["p_seeds"]), _sig(c["p_holm"]), _mcnemar(c)]) + " |")
    n = next((c["n_tests"] for c in comparisons if c.get("n_tests")), 0)
    return ("\n".join(lines) + f"\n\nPaired on the same seeds. The method test is the paired t-test over seeds, "
            f"Holm-corrected across the {n} tests of this table; n.s. = corrected p ≥ {ALPHA}. McNemar per seed "
            "only describes those trained models on these prompts (is this pair of models different?), not the method.")
