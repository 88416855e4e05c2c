"""Apply the tuning rule fixed before the T / defensive-rate / clean-size sweeps ran (docs/results.md section 2)
to their results, and print each knob's table and the value the rule picks.

    python experiments/choose_defaults.py outputs/multirun/ablation_n_triggers \\
        outputs/multirun/ablation_defense_rate outputs/multirun/ablation_clean_size [--out choice.md]

The rule, per knob (the other two at their defaults): score = mean validation ASR of MB-Defense over the
tuning attacks x seeds (every (attack, seed) cell must be present); keep values whose mean CACC is at most
`CACC_MARGIN` below the default's; values within `ASR_TIE` of the lowest score tie; the default wins a tie it
is in, otherwise the cheapest tied value (the smallest: fewer defensive or clean samples) does.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mbdef.report.aggregate import load_runs

KNOBS = {"n_triggers": 1, "rate_per_trigger": 0.04, "clean_size": 128}  # the defaults the sweeps start from
SWEEPS = {"ablation_n_triggers": "n_triggers", "ablation_defense_rate": "rate_per_trigger",
          "ablation_clean_size": "clean_size"}  # sweep (preset) -> the defense key it varies
CACC_MARGIN = 0.02
ASR_TIE = 0.02


def cells(sweep_dir: str, knob: str) -> dict:
    """{knob value: {(attack, seed): (asr, cacc)}} from the sweep's finished MB-Defense jobs."""
    out = defaultdict(dict)
    for run in load_runs([sweep_dir]):
        r = run["results"]
        if r["defense"] != "mb_defense" or r.get("eval_split") != "validation":
            continue
        value = run["config"].get(f"defense.{knob}")
        out[value][(r["attack"], r["seed"])] = (r["asr"], r["cacc"])
    return dict(out)


def choose(table: dict, default) -> tuple[object, dict]:
    """The rule on {value: {(attack, seed): (asr, cacc)}}: (chosen value, {value: (asr, cacc, n)})."""
    grid = set.union(*(set(c) for c in table.values()))
    complete = {v: c for v, c in table.items() if set(c) == grid}
    if default not in complete:
        raise ValueError(f"the default ({default}) has no complete set of (attack, seed) cells")
    mean = lambda c, i: sum(x[i] for x in c.values()) / len(c)
    scores = {v: (mean(c, 0), mean(c, 1), len(c)) for v, c in complete.items()}
    floor = scores[default][1] - CACC_MARGIN
    allowed = {v: s for v, s in scores.items() if s[1] >= floor}
    best = min(s[0] for s in allowed.values())
    tied = sorted(v for v, s in allowed.items() if s[0] <= best + ASR_TIE)
    return (default if default in tied else tied[0]), scores


def report(dirs: list[str]) -> str:
    lines = []
    for d in dirs:
        knob = next((k for sweep, k in SWEEPS.items() if sweep in Path(d).name), None)
        if knob is None:
            raise SystemExit(f"{d}: not one of the ablation sweeps {sorted(SWEEPS)}")
        table = cells(d, knob)
        if not table:
            lines += [f"## {knob}", "", "no finished job", ""]
            continue
        chosen, scores = choose(table, KNOBS[knob])
        lines += [f"## {knob} (default {KNOBS[knob]})", "", "| value | mean ASR | mean CACC | cells |", "|---|---|---|---|"]
        for v in sorted(table):
            if v in scores:
                a, c, n = scores[v]
                mark = " **(chosen)**" if v == chosen else ""
                lines.append(f"| {v}{mark} | {a:.3f} | {c:.3f} | {n} |")
            else:
                lines.append(f"| {v} | incomplete | | {len(table[v])} |")
        lines += ["", f"rule's choice: {knob} = {chosen}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from paper_table import cli  # experiments/ is on the path when this runs as a script

    cli(report, __doc__)
