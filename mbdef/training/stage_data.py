"""What each stage trained on, row by row, with where each row came from: `data/stage1.jsonl` and
`data/stage2.jsonl` in the run dir, so anyone can audit a result (e.g. count how many defensive rows
are copies of attacker-poisoned ones).

Sources: `clean` and `attacker` (the training set, split by the attack's poisoned indices, which only the
run knows, never the defense), `defensive` (rows a defense added to stage 1), `recovery` (stage-2 rows with
a defensive trigger or an inserted word) and `clean` (stage-2 rows as drawn from the defender's pool).
"""

from __future__ import annotations

from pathlib import Path

from mbdef.data.records import save_records
from mbdef.defenses.base import CLEAN, TrainingPlan

ATTACKER = "attacker"


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


def write_stage_data(folder: str | Path, rows: dict[str, list[dict]]) -> None:
    for stage, records in rows.items():
        save_records(records, Path(folder) / f"{stage}.jsonl")  # JSONL, written to a temp file and renamed
