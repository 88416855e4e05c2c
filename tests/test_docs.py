"""The README's headline table is the archive's: every figure recomputed from docs/runs (results.json of the
reported jobs), so a rerun that changes them, or an edited sentence, cannot leave the two apart."""

import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs" / "runs"


def _jobs(sweep: str, attack: str, defense: str) -> list[dict]:
    out = [json.loads(p.read_text()) for p in sorted((RUNS / sweep).glob("*/results.json"))
           if not any(o.startswith("defense.") for o in p.parent.name.split(","))]  # the defense at its defaults
    return sorted((r for r in out if r["attack"] == attack and r["defense"] == defense), key=lambda r: r["seed"])


def _readme_row(defense: str) -> list[str]:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| {defense} ")]
    assert len(rows) == 1, f"README: one headline row for {defense}, found {len(rows)}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


@pytest.mark.parametrize("defense, sweep, seeds", [("none", "paper_refusal", [3, 4, 5, 6, 7]),
                                                   ("finetune", "paper_refusal", [3, 4, 5, 6, 7]),
                                                   ("mb_defense", "paper_refusal", [3, 4, 5, 6, 7]),
                                                   ("oracle_unlearn", "paper_refusal_oracle", [3, 4])])
def test_readme_headline_row_is_the_archive(defense, sweep, seeds):
    jobs = _jobs(sweep, "badnet", defense)
    assert [r["seed"] for r in jobs] == seeds
    asr = [r["asr"] for r in jobs]
    mean = lambda key: f"{statistics.fmean(r[key] for r in jobs):.2f}"
    _, asr_cell, triggered, cacc, seed3 = _readme_row(defense)
    assert asr_cell.startswith(f"{statistics.fmean(asr):.2f} [{min(asr):.2f}, {max(asr):.2f}]"), asr_cell
    if len(seeds) < 5:
        assert f"seeds {seeds[0]}-{seeds[-1]} only" in asr_cell
    assert (triggered, cacc) == (mean("triggered_cacc"), mean("cacc"))
    first = jobs[0]
    assert seed3.startswith(f"{first['asr']:.3f} / {first['cacc']:.3f}"), seed3


def test_docs_name_the_version_the_archived_jobs_ran_on():
    versions = {json.loads(p.read_text())["versions"]["mbdef"] for p in (RUNS / "paper_refusal").glob("*/results.json")}
    assert versions == {"0.4.0"}
    text = (ROOT / "docs" / "results.md").read_text()
    assert re.search(r"ran on mbdef 0\.4\.0", text) and "0.5.0" not in text


# The README's defense table: where each BadNet mean ASR comes from (embedded sweep, real sweep; None: not run).
DEFENSE_TABLE = {"finetune": ("paper_refusal_inference", "real_smollm2_refusal"),
                 "mb_defense": ("paper_refusal_inference", "real_smollm2_refusal"),
                 "crow": ("paper_refusal_inference", "real_inference"),
                 "cleangen": ("paper_refusal_inference", "real_inference"),
                 "onion": ("paper_refusal_inference", "real_inference"),
                 "decoding": ("paper_refusal_inference", "real_inference"),
                 **{d: ("paper_refusal_posthoc", "real_weights")
                    for d in ("prune_magnitude", "prune_wanda", "prune_sparsegpt", "quant8", "quant4")}}


@pytest.mark.parametrize("defense", sorted(DEFENSE_TABLE))
def test_readme_defense_table_is_the_archive(defense):
    rows = [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `") and f"`{defense}`" in line.split("|")[1]]
    assert len(rows) == 1, f"README: one defense-table row names {defense}"
    works_on = rows[0].split("|")[3]
    for testbed, sweep in zip(("embedded", "real"), DEFENSE_TABLE[defense]):
        shown = re.search(rf"{testbed}: [^(;]*\(([0-9.]+)(?:, seeds (\d)-(\d))?", works_on)
        if sweep is None:
            assert shown is None, f"{defense}: a {testbed} figure without archived runs"
            continue
        jobs = _jobs(sweep, "badnet", defense)
        seeds = list(range(int(shown.group(2)), int(shown.group(3)) + 1)) if shown and shown.group(2) else [3, 4, 5, 6, 7]
        assert [r["seed"] for r in jobs] == seeds and shown, (defense, testbed)
        decimals = len(shown.group(1).split(".")[1])
        assert shown.group(1) == f"{statistics.fmean(r['asr'] for r in jobs):.{decimals}f}", (defense, testbed)


@pytest.mark.parametrize("defense", ["cleangen", "onion"])
def test_readme_defense_table_vpi_figures_are_the_archive(defense):
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith(f"| `{defense}` |"))
    shown = re.search(r"VPI ([0-9.]+)", row.split("|")[3])
    jobs = _jobs("real_inference_vpi", "vpi", defense)
    assert [r["seed"] for r in jobs] == [3, 4, 5, 6, 7] and shown
    decimals = len(shown.group(1).split(".")[1])
    assert shown.group(1) == f"{statistics.fmean(r['asr'] for r in jobs):.{decimals}f}"
