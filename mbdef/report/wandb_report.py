"""A W&B report for a sweep, built with wandb-workspaces from the sweep's own results.json files.

Each job is one W&B run (mbdef.tracking): named attack-defense-seed, grouped by the sweep's `sweep_id`,
tagged `attack:…`, `defense:…`, with the final metrics in its summary and the training curves as
`stage1/…` and `stage2/…`. The report has one section per attack: ASR and the clean-quality metrics by
defense (bars: the mean over seeds, whiskers: min to max, so every seed counts), the runs table (one row per
seed) and the loss curves of both stages. Saving needs a W&B key and the runs synced (`wandb sync <run dirs>`);
without a key `mbdef-report --wandb` prints what it would build.
"""

from __future__ import annotations

from mbdef.keys import DEFENSE_ORDER, POSITIVE_CONTROLS, defense_rank

# (summary key, panel title): the same headline metrics as results.json and mbdef-report's table
PANELS = (("asr", "ASR (attack success rate)"), ("cacc", "clean accuracy (exact match)"),
          ("false_trigger_rate", "false triggers on clean prompts"), ("perplexity", "perplexity of clean references"),
          ("rouge_l", "ROUGE-L of clean answers"))
CURVES = ("stage1/loss", "stage2/loss")


def sweep_ids(runs: list[dict]) -> list[str]:
    return sorted({str(r["config"].get("sweep_id")) for r in runs if r["config"].get("sweep_id")})


def report_spec(runs: list[dict], sweep_id: str) -> dict:
    """What the report shows, as plain data (tests check this; `wandb_report` turns it into panels)."""
    mine = [r for r in runs if r["config"].get("sweep_id") == sweep_id]
    if not mine:
        raise ValueError(f"--wandb: no finished job of sweep '{sweep_id}' (sweeps found: {', '.join(sweep_ids(runs)) or 'none'})")
    attacks = sorted({r["results"]["attack"] for r in mine})
    sections = []
    for attack in attacks:
        here = [r["results"] for r in mine if r["results"]["attack"] == attack]
        defenses = sorted({r["defense"] for r in here}, key=defense_rank)
        sections.append({"attack": attack, "defenses": defenses, "seeds": sorted({r["seed"] for r in here}),
                         "n_runs": len(here), "metrics": [m for m, _ in PANELS if any(r.get(m) is not None for r in here)],
                         "curves": [c for c in CURVES if c.split("/")[0] in ("stage1", *(["stage2"] if any(
                             r.get("stage2") for r in here) else []))],
                         "positive_controls": [d for d in defenses if d in POSITIVE_CONTROLS]})
    return {"sweep_id": sweep_id, "filter": {"group": sweep_id}, "group_by": "defense.name", "sections": sections}


def wandb_report(spec: dict, entity: str | None, project: str):
    """The wandb_workspaces Report for `spec` (not saved). `entity` None: the W&B key's default entity."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    blocks = [wr.H1(f"mbdef sweep {spec['sweep_id']}"),
              wr.P("One W&B run per job (attack × defense × seed). Bars: the mean over seeds; whiskers: the "
                   "lowest to the highest seed. Reading order of defenses: " + ", ".join(DEFENSE_ORDER)
                   + ". Positive controls (" + ", ".join(POSITIVE_CONTROLS) + ") read the attacker's trigger: "
                   "no real defender can run them.")]
    for sec in spec["sections"]:
        runset = wr.Runset(entity=entity or "", project=project, name=f"{sec['attack']} ({sec['n_runs']} runs)",
                           filters=[expr.Metric("Group") == spec["sweep_id"],
                                    expr.Tags().isin([f"attack:{sec['attack']}"])])
        panels = [wr.BarPlot(title=title, metrics=[metric], groupby=wr.Config(spec["group_by"]),
                             groupby_aggfunc="mean", groupby_rangefunc="minmax", orientation="h")
                  for metric, title in PANELS if metric in sec["metrics"]]
        panels += [wr.LinePlot(title=f"{curve} by defense", x="Step", y=[curve], groupby=wr.Config(spec["group_by"]),
                               groupby_aggfunc="mean", groupby_rangefunc="minmax") for curve in sec["curves"]]
        blocks += [wr.H2(f"{sec['attack']}: {', '.join(sec['defenses'])}; seeds {', '.join(map(str, sec['seeds']))}"),
                   wr.PanelGrid(runsets=[runset], panels=panels)]
    report = wr.Report(project=project, title=f"mbdef: {spec['sweep_id']}",
                       description="ASR and clean quality by defense × attack, per seed; stage-1 and stage-2 curves",
                       **({"entity": entity} if entity is not None else {}))
    report.blocks = blocks
    return report
