"""One table for the ablation sweeps: per sweep, the knob it varies, and ASR / CACC (mean ± std over seeds)
at each value, one line per (attack, defense).

    python experiments/ablation_table.py outputs/multirun/ablation_* [--out ablations.md]

(`make ablations` runs the six ablation presets and then this.) Each sweep dir is read through mbdef's
report code, so the numbers are those of its `report/report.md`; the per-sweep plots are
`<sweep>/report/ablation_<knob>.png`.
"""

from __future__ import annotations

from pathlib import Path

from mbdef.report.aggregate import aggregate, load_runs, unfinished_jobs


def _cell(row: dict) -> str:
    if row.get("asr") is None:
        return "–"
    std = lambda k: f" ± {row[k + '_std']:.3f}" if row.get(k + "_std") is not None else ""
    return f"{row['asr']:.3f}{std('asr')} / {row['cacc']:.3f}{std('cacc')}" + (f" (n={row['n']})" if row["n"] != 3 else "")


def sweep_lines(sweep_dir: str) -> list[str]:
    runs = load_runs([sweep_dir])
    name = Path(sweep_dir).name
    if not runs:
        return [f"| {name} | – | – | no finished job | |"]
    rows, knobs = aggregate(runs)
    knob = ", ".join(knobs) or "–"
    lines = []
    for row in rows:
        value = ", ".join(str(row.get(k)) for k in knobs) or "–"
        lines.append(f"| {name} | {row['attack']} / {row['defense']} | {knob} = {value} | {_cell(row)} |")
    if missing := unfinished_jobs([sweep_dir]):
        lines.append(f"| {name} | | {len(missing)} job(s) unfinished | |")
    return lines


def table(dirs: list[str]) -> str:
    out = ["ASR / CACC, mean ± std over seeds (n = 3 unless noted)", "",
           "| sweep | attack / defense | knob = value | ASR / CACC |", "|---|---|---|---|"]
    for d in dirs:
        if not Path(d).is_dir():
            raise SystemExit(f"not a directory: {d} (run its preset first: mbdef experiment={Path(d).name})")
        out += sweep_lines(d)
    return "\n".join(out)


if __name__ == "__main__":
    from paper_table import cli  # experiments/ is on the path when this runs as a script

    cli(table, __doc__)
