"""What each stage trained on, row by row, with where each row came from (mbdef.keys: the row sources):
`data/stage1.jsonl` and `data/stage2.jsonl` in the run dir, so anyone can audit a result (e.g. count how many
defensive rows are copies of attacker-poisoned ones)."""

from __future__ import annotations

from pathlib import Path

from mbdef.data.records import save_records
from mbdef.defenses.base import TrainingPlan
from mbdef.keys import ATTACKER, CLEAN


def stage_rows(plan: TrainingPlan, n_train: int, poisoned_indices: list[int]) -> dict[str, list[dict]]:
    """{stage: rows with a `source` field}; stage2 only when the plan has one."""
    bad = set(poisoned_indices)
    stage1 = [{**r, "source": (ATTACKER if i in bad else CLEAN) if i < n_train else plan.added_source}
              for i, r in enumerate(plan.stage1)]
    out = {"stage1": stage1}
    if plan.stage2:
        sources = plan.stage2_sources or [CLEAN] * len(plan.stage2)
        out["stage2"] = [{**r, "source": s} for r, s in zip(plan.stage2, sources)]
    return out


def source_counts(rows: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """{stage: {source: rows}}: results.json's `trained_on`."""
    return {k: {src: sum(r["source"] == src for r in rs) for src in sorted({r["source"] for r in rs})}
            for k, rs in rows.items()}


def write_stage_data(folder: str | Path, rows: dict[str, list[dict]]) -> None:
    for stage, records in rows.items():
        save_records(records, Path(folder) / f"{stage}.jsonl")  # JSONL, written to a temp file and renamed
