"""`mbdef-report DIR [DIR ...]`: every results.json under the dirs -> one table (markdown + CSV), mean ± std
and 95 % t-interval over seeds, paired seed-level tests (Holm-corrected), PNG plots, and the list of jobs that did not finish."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbdef.io import exit_on_user_error, write_json_atomic
from mbdef.report.aggregate import aggregate, load_runs, unfinished_jobs
from mbdef.report.evidence import evidence, evidence_markdown, evidence_plots
from mbdef.report.paired import paired_comparisons, paired_markdown
from mbdef.report.write import markdown, plots, write_csv


def build_report(dirs: list[str | Path], out: str | Path, runs: list[dict] | None = None) -> dict:
    """`runs`: already loaded with `load_runs(dirs)` (the multirun callback reads them once for both uses)."""
    runs = load_runs(dirs) if runs is None else runs
    if not runs:
        raise ValueError(f"no results.json under {', '.join(map(str, dirs))}")
    rows, knobs = aggregate(runs)
    unfinished = unfinished_jobs(dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, knobs, unfinished)
    paired = paired_comparisons(runs, knobs)
    paired_md = paired_markdown(paired)
    ev = evidence(runs)
    ev_md = evidence_markdown(ev)
    (out / "report.md").write_text(f"# mbdef report\n\nFrom {len(runs)} finished job(s) under "
                                   f"{', '.join(map(str, dirs))}.\n\n{md}\n"
                                   + (f"\n## Paired comparisons\n\n{paired_md}\n" if paired_md else "")
                                   + (f"\n## Evidence beyond ASR\n\n{ev_md}\n" if ev_md else ""))
    write_csv(rows, knobs, out / "report.csv")
    write_json_atomic({"rows": rows, "knobs": knobs, "unfinished": unfinished, "paired": paired, "evidence": ev},
                      out / "report.json")
    pngs = plots(rows, knobs, out) + evidence_plots(ev, out)
    return {"rows": rows, "knobs": knobs, "unfinished": unfinished, "markdown": md, "paired": paired,
            "paired_markdown": paired_md, "evidence": ev, "evidence_markdown": ev_md, "out": str(out),
            "plots": [str(p) for p in pngs], "n_runs": len(runs)}


@exit_on_user_error("mbdef-report")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mbdef-report", description=__doc__)
    p.add_argument("dirs", nargs="+", help="directories to search for results.json (runs, sweeps, outputs/)")
    p.add_argument("--out", help="where to write report.md/.csv/.json and the PNGs (default: <first dir>/report)")
    p.add_argument("--wandb", nargs="?", const="", metavar="SWEEP_ID",
                   help="build a W&B report of a sweep (its sweep_id; default: the only one under the dirs) and save "
                        "it when a W&B key is configured; the runs must be synced first (wandb sync)")
    p.add_argument("--entity", help="W&B entity of the report (default: the runs' logger.entity, else yours)")
    p.add_argument("--project", help="W&B project of the report (default: the runs' logger.project)")
    args = p.parse_args(argv)
    if missing := [d for d in args.dirs if not Path(d).is_dir()]:
        raise ValueError(f"not a directory: {', '.join(missing)}")
    if args.wandb is not None:
        return wandb_main(load_runs(args.dirs), args.wandb, args.entity, args.project)
    rep = build_report(args.dirs, args.out or Path(args.dirs[0]) / "report")
    print(rep["markdown"])
    if rep["paired_markdown"]:
        print("\nPaired comparisons\n\n" + rep["paired_markdown"])
    if rep["evidence_markdown"]:
        print("\nEvidence beyond ASR\n\n" + rep["evidence_markdown"])
    print(f"\n{rep['n_runs']} runs -> {rep['out']}/report.md, report.csv, " + ", ".join(Path(x).name for x in rep["plots"]))
    return 0


def wandb_main(runs: list[dict], sweep_id: str, entity: str | None, project: str | None) -> int:
    from mbdef.report.wandb_report import report_spec, sweep_ids, wandb_report
    from mbdef.tracking import has_wandb_key

    found = sweep_ids(runs)
    if not sweep_id and len(found) != 1:
        raise ValueError(f"--wandb: name one sweep; found {', '.join(found) or 'no finished job with a sweep_id'}")
    spec = report_spec(runs, sweep_id or found[0])
    first = next(r["config"] for r in runs if r["config"].get("sweep_id") == spec["sweep_id"])
    entity, project = entity or first.get("logger.entity"), project or first.get("logger.project") or "mbdef"
    online = has_wandb_key()
    report = wandb_report(spec, entity if entity or online else "", project)  # offline: no default entity to ask for
    for sec in spec["sections"]:
        print(f"{sec['attack']}: {sec['n_runs']} runs; defenses {', '.join(sec['defenses'])}; seeds "
              f"{', '.join(map(str, sec['seeds']))}; panels {', '.join(sec['metrics'] + sec['curves'])}")
    if not online:
        print(f"W&B report '{report.title}' ({len(report.blocks)} blocks) built, not saved: no W&B key (wandb login); "
              f"sync the runs (wandb sync <their wandb/ dirs>) and run this again to publish it in {project}")
        return 0
    report.save()
    print(f"W&B report saved: {report.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
