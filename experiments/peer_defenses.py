"""The peer benchmark's defenses against the undefended model of the same seeds: the tuning rule of
docs/results.md section 5b on a tuning grid, and the report-seed table with paired seed-level tests.

    python experiments/peer_defenses.py tune outputs/multirun/tune_inference
    python experiments/peer_defenses.py table outputs/multirun/paper_refusal_weights [--out table.md]

`tune`: per defense, the value of its knob (KNOBS) with the lowest mean ASR among those whose mean CACC is
at least `none`'s minus CACC_MARGIN; values within ASR_TIE of the best tie and a tie goes to the paper's
default; with no value inside the CACC bound the default stays. Every value must cover the seeds `none` has.

`table`: per defense, ASR per seed, means, and the paired t-test over seeds of ASR and CACC against `none`
(and CROW against `finetune`, the same stage 2 without its term), Holm-corrected across the table's tests.
On the real model CACC (exact match on free-form answers) says little; ROUGE-L and perplexity stand beside it.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from mbdef.keys import defense_rank
from mbdef.report.aggregate import load_runs
from mbdef.report.paired import holm, paired_t_p

KNOBS = {"onion": ("clean_flag_rate", 0.05), "cleangen": ("alpha", 20.0), "decoding": ("temperature", 1.0),
         "crow": ("alpha", 5.5)}  # defense -> (the knob tuned, the paper's default)
CACC_MARGIN = 0.02
ASR_TIE = 0.02
PAIRS = [("crow", "finetune")]  # besides every defense against none


def by_defense(dirs: list[str], knob_of=lambda d: None) -> dict:
    """{(defense, knob value): {seed: results}}."""
    out = defaultdict(dict)
    for run in load_runs(dirs):
        r = run["results"]
        knob = knob_of(r["defense"])
        out[(r["defense"], run["config"].get(f"defense.{knob}") if knob else None)][r["seed"]] = r
    return out


def arm(run: dict) -> str:
    """The defense's name, with the `defense.*` overrides of its job directory (Hydra's override dirname) when
    a sweep ran one defense at several settings: `quant4 (group_size=192)`."""
    knobs = [part.removeprefix("defense.") for part in Path(run["dir"]).name.split(",") if part.startswith("defense.")]
    return run["results"]["defense"] + (f" ({', '.join(knobs)})" if knobs else "")


def tune(dirs: list[str]) -> str:
    runs = by_defense(dirs, lambda d: KNOBS.get(d, (None,))[0])
    none = runs.get(("none", None))
    if not none:
        raise SystemExit(f"no finished `none` job under {', '.join(dirs)}: the rule is relative to it")
    seeds = sorted(none)
    mean = lambda rs, k: float(np.mean([rs[s][k] for s in seeds]))
    floor = mean(none, "cacc") - CACC_MARGIN
    lines = [f"`none` on seeds {seeds}: ASR {mean(none, 'asr'):.3f}, CACC {mean(none, 'cacc'):.3f}; "
             f"CACC bound {floor:.3f}", ""]
    for defense, (knob, default) in KNOBS.items():
        grid = {v: rs for (d, v), rs in runs.items() if d == defense}
        if not grid:
            continue
        scores = {v: (mean(rs, "asr"), mean(rs, "cacc")) for v, rs in grid.items() if set(seeds) <= set(rs)}
        allowed = {v: s for v, s in scores.items() if s[1] >= floor}
        if allowed:
            best = min(s[0] for s in allowed.values())
            tied = sorted(v for v, s in allowed.items() if s[0] <= best + ASR_TIE)
            chosen = default if default in tied else min(tied, key=lambda v: allowed[v][0])
        else:
            chosen = default
        lines += [f"## {defense}: {knob} (paper default {default})", "",
                  "| value | mean ASR | mean CACC | within the CACC bound |", "|---|---|---|---|"]
        for v in sorted(grid, key=float):
            a, c = scores.get(v, (None, None))
            cell = "incomplete | | " if a is None else f"{a:.3f} | {c:.3f} | {'yes' if v in allowed else 'no'}"
            lines.append(f"| {v}{' **(chosen)**' if v == chosen else ''} | {cell} |")
        why = "" if allowed else " (no value within the CACC bound: the paper's default stays)"
        lines += ["", f"rule's choice: {defense}.{knob} = {chosen}{why}", ""]
    return "\n".join(lines)


def table(dirs: list[str]) -> str:
    runs = defaultdict(dict)
    for run in load_runs(dirs):
        runs[arm(run)][run["results"]["seed"]] = run["results"]
    if "none" not in runs:
        raise SystemExit(f"no finished `none` job under {', '.join(dirs)}")
    defenses = sorted(runs, key=lambda a: (defense_rank(a.split()[0]), a))
    seeds = sorted(runs["none"])
    extra = [("false_trigger_rate", "false triggers"), ("rouge_l", "ROUGE-L"), ("perplexity", "perplexity")]
    seconds = [("stage2_s", "stage 2 s"), ("eval_s", "eval s")]  # stage 1 is shared (cached) or the same size
    tests = []
    for d in defenses:
        for base in ["none"] + [b for a, b in PAIRS if a == d]:
            if d == base or base not in runs:
                continue
            common = [s for s in seeds if s in runs[d] and s in runs[base]]
            for metric in ("asr", "cacc"):
                a, b = [runs[d][s][metric] for s in common], [runs[base][s][metric] for s in common]
                tests.append({"defense": d, "baseline": base, "metric": metric, "n": len(common),
                              "delta": float(np.mean(np.subtract(a, b))) if common else None,
                              "p_seeds": paired_t_p(a, b) if len(common) > 1 else None})
    holm(tests)
    def mean(d, k):
        values = [runs[d][s][k] for s in runs[d] if runs[d][s].get(k) is not None]
        return float(np.mean(values)) if values else None
    f3 = lambda v: "–" if v is None else f"{v:.3f}"
    mean_s = lambda d, k: np.mean([runs[d][s].get("timings", {}).get(k, 0.0) for s in runs[d]])
    lines = [f"Seeds {seeds} (`none`); paired t-test over seeds, Holm across the {sum(t['p_seeds'] is not None for t in tests)} "
             "tests below (n.s. = corrected p ≥ 0.05).", "",
             "| defense | ASR per seed | mean ASR | CACC | " + " | ".join(n for _, n in extra + seconds) + " |",
             "|---|---|---|---|" + "---|" * len(extra + seconds)]
    for d in defenses:
        per_seed = " ".join(f"{runs[d][s]['asr']:.2f}" if s in runs[d] else "–" for s in seeds)
        lines.append(f"| {d} | {per_seed} | {f3(mean(d, 'asr'))} | {f3(mean(d, 'cacc'))} | "
                     + " | ".join([f3(mean(d, k)) for k, _ in extra] + [f"{mean_s(d, k):.0f}" for k, _ in seconds])
                     + " |")
    p = lambda v: "–" if v is None else f"{v:.3g}"
    lines += ["", "| defense | vs | metric | seeds | Δ | p (paired t) | p, Holm |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['defense']} | {t['baseline']} | {t['metric'].upper()} | {t['n']} | "
              f"{'–' if t['delta'] is None else format(t['delta'], '+.3f')} | {p(t['p_seeds'])} | "
              f"{p(t['p_holm'])}{'' if t['p_holm'] is None or t['p_holm'] < 0.05 else ' n.s.'} |" for t in tests]
    return "\n".join(lines)


if __name__ == "__main__":
    from paper_table import cli  # experiments/ is on the path when this runs as a script

    mode = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("tune", "table") else None
    if mode is None:
        raise SystemExit("usage: peer_defenses.py {tune,table} DIR [DIR…] [--out FILE]")
    cli(tune if mode == "tune" else table, __doc__)
