"""The paper's main table from a finished (or partial) sweep: attacks x defenses, ASR / CACC over seeds,
and MB-Defense's paired seed-level tests (Holm-corrected) against clean fine-tuning and the controls.

    python experiments/paper_table.py outputs/multirun/paper_refusal [--out table.md]

(`make paper` runs the paper_refusal sweep and then this.) Reads results.json files through mbdef's report
code, so the numbers are the same as in `mbdef-report`'s report.md, only laid out as the paper does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mbdef.keys import defense_rank
from mbdef.report.aggregate import aggregate, load_runs, unfinished_jobs
from mbdef.report.paired import holm, paired_comparisons



def table(dirs: list[str]) -> str:
    runs = load_runs(dirs)
    if not runs:
        raise SystemExit(f"no results.json under {', '.join(dirs)}")
    rows, knobs = aggregate(runs)
    cell = {(r["attack"], r["defense"]): r for r in rows}
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    defenses = sorted({r["defense"] for r in rows}, key=defense_rank)
    n_seeds = max(r["n"] for r in rows)
    fmt = lambda r: "–" if r is None or r.get("asr") is None else (
        f"{r['asr']:.2f} / " + ("–" if r.get("triggered_cacc") is None else f"{r['triggered_cacc']:.2f}")
        + f" / {r['cacc']:.2f}"
        + (f" (n={r['n']})" if r["n"] != n_seeds else ""))
    out = [f"ASR / triggered CACC / CACC, mean over seeds (n = {n_seeds} unless noted)", "",
           "| attack | " + " | ".join(defenses) + " |", "|---|" + "---|" * len(defenses)]
    out += [f"| {a} | " + " | ".join(fmt(cell.get((a, d))) for d in defenses) + " |" for a in attacks]
    comps = [c for c in paired_comparisons(runs, knobs) if c["defense"] == "mb_defense" and c["baseline"] != "none"]
    holm(comps)  # the family is this table's comparisons, not every pair mbdef-report tests
    if comps:
        out += ["", f"MB-Defense minus each baseline, paired by seed: t-test p, and p Holm-corrected across the "
                f"{len(comps)} comparisons of this table (n.s. = corrected p ≥ 0.05)", "",
                "| attack | metric | vs | Δ | p seeds | p Holm |", "|---|---|---|---|---|---|"]
        p = lambda v: "–" if v is None else f"{v:.2g}"
        sig = lambda v: "–" if v is None else f"{v:.2g}" + ("" if v < 0.05 else " n.s.")
        out += [f"| {c['attack']} | {c['metric'].upper()} | {c['baseline']} | {c['delta']:+.3f} | {p(c['p_seeds'])} | "
                f"{sig(c['p_holm'])} |" for c in comps]
    if missing := unfinished_jobs(dirs):
        out += ["", f"{len(missing)} job(s) unfinished: " + ", ".join(Path(m).name for m in missing)]
    return "\n".join(out)


def cli(make_table, doc: str) -> None:
    """`script DIR [DIR…] [--out FILE]`: print the table and optionally write it (shared by experiments/)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--out")
    a = ap.parse_args()
    text = make_table(a.dirs)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    cli(table, __doc__)
