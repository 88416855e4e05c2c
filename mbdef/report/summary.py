"""Collect run results into a comparison table and a JSON summary; a Hydra callback for multiruns."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mbdef.io import write_json_atomic
from mbdef.keys import defense_rank
from mbdef.report.aggregate import knob_order, load_runs, varying_knobs

SUMMARY_KEYS = ("attack", "defense", "asr", "cacc", "false_trigger_rate")


def collect(root: str | Path) -> list[dict]:
    """Every results.json under `root`, except those of superseded runs (kept for the record only)."""
    return [run["results"] for run in load_runs([root])]


def summary_rows(results: list[dict], knobs: dict[str, list] | None = None) -> list[dict]:
    """One row per job; `knobs` maps a swept setting (e.g. defense.n_triggers) to its value per job, so jobs
    that share attack, defense and seed stay tellable apart."""
    knobs = knobs or {}
    rows = []
    for i, r in enumerate(results):
        row = {k: r.get(k) for k in SUMMARY_KEYS}
        row.update({k: values[i] for k, values in knobs.items()})
        row.update(seed=r.get("seed"), model=r.get("model"), triggered_cacc=r.get("triggered_cacc"),
                   asr_after_stage1=(r.get("after_stage1") or {}).get("asr"), output_dir=r.get("output_dir"))
        rows.append(row)
    return sorted(rows, key=lambda x: (str(x["attack"]), defense_rank(x["defense"]),
                                       *[knob_order(x[k]) for k in knobs], x["seed"] or 0))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _knob(v) -> str:
    """A swept setting as set: a learning rate of 2.5e-4 is not 0.000, an empty string is not a blank cell."""
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else '""' if v == "" else str(v)


def table_text(rows: list[dict], knobs: list[str] = ()) -> str:
    """A markdown table (readable in a terminal and pasteable into notes)."""
    cols = ["attack", "defense", *knobs, "seed", "asr", "triggered_cacc", "cacc", "false_trigger_rate", "asr_after_stage1"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join((_knob if c in knobs else _fmt)(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


class SweepSummary(Callback):
    """At the end of a multirun: print the per-job table, write the full report (report.md/.csv/.json and
    PNG plots under <sweep>/report, as `mbdef-report <sweep>` would), and print summary.json's path last."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        runs = load_runs([sweep_dir])  # read once: the per-job table and the report both use them
        knobs = varying_knobs(runs)
        rows = summary_rows([run["results"] for run in runs],
                            {k: [run["config"].get(k) for run in runs] for k in knobs})
        if not rows:
            print(f"no results.json under {sweep_dir}")
            return
        path = write_json_atomic(rows, sweep_dir / "summary.json")
        print()
        print(table_text(rows, knobs))
        from mbdef.report.cli import build_report

        rep = build_report([sweep_dir], sweep_dir / "report", runs=runs)
        if rep["unfinished"]:
            print(f"{len(rep['unfinished'])} job(s) did not finish; re-run the same command to resume them:")
            print("\n".join(f"  {u}" for u in rep["unfinished"]))
        print(f"report (mean ± std over seeds, plots): {rep['out']}/report.md")
        print(path, flush=True)
