"""mbdef-report: exact aggregation over seeds, knob detection, unfinished jobs, files and plots."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from mbdef.report.aggregate import aggregate, load_runs, t_interval, unfinished_jobs
from mbdef.report.cli import build_report
from tests.fake_runs import fake_job


@pytest.fixture
def sweep(tmp_path):
    for s, (a_none, a_mb) in enumerate([(1.0, 0.1), (0.9, 0.3), (1.0, 0.2)]):
        fake_job(tmp_path, f"none{s}", "badnet", "none", s, a_none, 0.8)
        fake_job(tmp_path, f"mb{s}", "badnet", "mb_defense", s, a_mb, 0.7 + 0.01 * s, n_triggers=3)
        fake_job(tmp_path, f"mb1_{s}", "badnet", "mb_defense", s, 0.5, 0.75, n_triggers=1)
    fake_job(tmp_path, "superseded/old", "badnet", "none", 0, 0.0, 0.0)  # never counted
    broken = tmp_path / "crashed"
    (broken / ".hydra").mkdir(parents=True)
    (broken / "RUNNING.json").write_text("{}")
    return tmp_path


def test_rows_are_exact_means_and_stds_over_seeds(sweep):
    rows, knobs = aggregate(load_runs([sweep]))
    assert knobs == ["defense.n_triggers"]
    by = {(r["defense"], r.get("defense.n_triggers")): r for r in rows}
    assert set(by) == {("none", None), ("mb_defense", 3), ("mb_defense", 1)}
    mb = by[("mb_defense", 3)]
    assert mb["n"] == 3 and mb["seeds"] == [0, 1, 2]
    assert mb["asr_per_seed"] == pytest.approx([0.1, 0.3, 0.2])  # aligned with the seeds, as fake_job wrote them
    assert mb["asr"] == pytest.approx(0.2) and mb["asr_std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert mb["cacc"] == pytest.approx(0.71)
    assert by[("none", None)]["asr"] == pytest.approx(2.9 / 3)
    lo, hi = mb["asr_ci"]  # mean 0.2, sd 0.1, n 3: half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.2484
    assert (lo, hi) == pytest.approx((0.2 - 0.24841, 0.2 + 0.24841), abs=1e-4)
    assert [r["defense"] for r in rows][0] == "none"


def test_knob_values_sort_as_numbers(tmp_path):
    for steps in (100, 25, 200, 50):
        fake_job(tmp_path, f"s{steps}", "badnet", "finetune", 0, 0.5, 0.9, steps=steps)
    rows, _ = aggregate(load_runs([tmp_path]))
    assert [r["defense.steps"] for r in rows] == [25, 50, 100, 200]


def test_end_of_sweep_table_names_the_swept_knob(sweep, capsys):
    from omegaconf import OmegaConf

    from mbdef.report.summary import SweepSummary

    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| attack"))
    assert header.split(" | ")[2] == "defense.n_triggers"
    mb = [line.split(" | ") for line in lines if "| mb_defense |" in line]
    assert [(row[2], row[3]) for row in mb] == [("1", "0"), ("1", "1"), ("1", "2"), ("3", "0"), ("3", "1"), ("3", "2")]
    summary = json.loads((sweep / "summary.json").read_text())
    assert sorted(r.get("defense.n_triggers") for r in summary if r["defense"] == "mb_defense") == [1, 1, 1, 3, 3, 3]


def test_end_of_sweep_table_shows_swept_settings_as_set():
    from mbdef.report.summary import table_text

    rows = [{"attack": "badnet", "defense": "none", "seed": 0, "asr": 0.98, "lr": 2.5e-4, "prompt": ""},
            {"attack": "badnet", "defense": "none", "seed": 0, "asr": 0.94, "lr": 2e-4, "prompt": None}]
    cells = [line.split(" | ") for line in table_text(rows, ["lr", "prompt"]).splitlines()[2:]]
    assert [(c[2], c[3], c[5]) for c in cells] == [("0.00025", '""', "0.980"), ("0.0002", "-", "0.940")]


def test_t_interval_covers_the_mean_at_its_level_with_few_seeds():
    """Coverage by simulation: 3 or 5 normal 'seeds' per interval, 4,000 intervals. A percentile bootstrap
    over 3 values covers about 74 %; the t-interval must cover 95 % within simulation error."""
    assert t_interval([0.5]) is None
    rng = np.random.default_rng(0)
    for n in (3, 5):
        hits = 0
        for _ in range(4000):
            lo, hi = t_interval(list(rng.normal(0.3, 0.1, n)))
            hits += lo <= 0.3 <= hi
        assert 0.94 <= hits / 4000 <= 0.96, (n, hits / 4000)


def test_ablation_curves_use_a_log_axis_only_for_knobs_spanning_ratios():
    from mbdef.report.write import log_axis

    assert log_axis([32, 64, 128, 256, 512]) and log_axis([0.005, 0.01, 0.02, 0.05, 0.1]) and log_axis([1, 2, 4, 8])
    assert not log_axis([0.01, 0.02, 0.04])     # a ratio of 4: linear spacing reads fine
    assert not log_axis([0, 1, 2, 3, 10])       # zero cannot go on a log axis
    assert not log_axis([1, 100])               # two points: nothing to space


def test_unfinished_jobs_are_listed(sweep):
    assert unfinished_jobs([sweep]) == [str(sweep / "crashed")]


def test_report_files_and_plots(sweep, tmp_path):
    rep = build_report([sweep], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| tiny | badnet | mb_defense | 3 | 3 | 0.200 ± 0.100 [" in md
    assert "1 job(s) did not finish" in md and "crashed" in md
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert len(rows) == 3 and {r["defense.n_triggers"] for r in rows} == {"", "1", "3"}
    names = sorted(p.split("/")[-1] for p in rep["plots"])
    assert names == ["ablation_defense_n_triggers.png", "asr_per_attack.png", "asr_vs_cacc.png",
                     "tradeoff_defense_n_triggers.png"]
    for p in rep["plots"]:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_positive_control_is_marked_as_no_defense(tmp_path):
    for s in (0, 1):
        fake_job(tmp_path / "sweep", f"none{s}", "badnet", "none", s, 1.0, 0.9)
        fake_job(tmp_path / "sweep", f"oracle{s}", "badnet", "oracle_unlearn", s, 0.0, 0.9)
    build_report([tmp_path / "sweep"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "oracle_unlearn: a positive control, not a defense" in md
    assert md.index("| badnet | none |") < md.index("| badnet | oracle_unlearn |")  # the reading order of keys.py
    build_report([tmp_path / "sweep" / "none0"], tmp_path / "out2")
    assert "positive control" not in (tmp_path / "out2" / "report.md").read_text()


def test_cli(sweep, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mbdef.report.cli", str(sweep), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0.200 ± 0.100" in r.stdout and "report.md" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mbdef.report.cli", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "mbdef.report.cli", str(tmp_path / "empty")], capture_output=True, text=True)
    assert r.returncode == 2 and "no results.json" in r.stderr


def test_paired_comparisons_pair_seeds_and_prompts_and_mark_non_significance(tmp_path):
    from scipy import stats

    from mbdef.report.paired import mcnemar_p, paired_comparisons, paired_t_p

    def job(name, defense, seed, asr_bits, **knobs):
        stage2 = {"stage2": {"steps": 25}} if defense in ("finetune", "mb_defense") else {}
        d = fake_job(tmp_path, name, "badnet", defense, seed, asr_bits.count("1") / len(asr_bits), 0.8, stage2,
                     **knobs)
        r = json.loads((d / "results.json").read_text())
        r["per_example"] = {"attack_success": asr_bits, "clean_correct": "1" * len(asr_bits)}
        (d / "results.json").write_text(json.dumps(r))

    # finetune keeps the backdoor on 18-20 of 20 prompts; mb_defense on 1-3: 51 discordant prompts one way
    for s, (ft, mb) in enumerate([(20, 2), (18, 1), (19, 3)]):
        job(f"ft{s}", "finetune", s, "1" * ft + "0" * (20 - ft))
        job(f"mb{s}", "mb_defense", s, "1" * mb + "0" * (20 - mb))
        job(f"none{s}", "none", s, "1" * 20)
        job(f"cg{s}", "cleangen", s, "0" * 20)  # trains no stage 2: compared with none as well
    runs = load_runs([tmp_path])
    comps = paired_comparisons(runs, knobs=[])
    pairs = {(c["defense"], c["baseline"], c["metric"]) for c in comps}
    assert ("mb_defense", "finetune", "asr") in pairs and ("none", "finetune", "asr") in pairs
    assert ("cleangen", "none", "asr") in pairs and ("cleangen", "finetune", "asr") in pairs
    # a defense with a stage 2 of its own is compared with finetune and the controls, not with none
    assert {d for d, b, _ in pairs if b == "none"} == {"cleangen"} and ("finetune", "finetune", "asr") not in pairs
    cg = next(c for c in comps if (c["defense"], c["baseline"], c["metric"]) == ("cleangen", "none", "asr"))
    assert cg["delta"] == -1.0 and cg["p_seeds"] == 2 / 8  # the same difference on 3 seeds: exact sign-flip p
    c = next(c for c in comps if (c["defense"], c["baseline"], c["metric"]) == ("mb_defense", "finetune", "asr"))
    assert c["seeds"] == [0, 1, 2] and c["delta"] == pytest.approx(-(18 + 17 + 16) / 60)
    # McNemar per seed only (18, 17, 16 discordant prompts, all one way), never pooled over seeds
    assert {s: v["discordant"] for s, v in c["mcnemar_per_seed"].items()} == {"0": [0, 18], "1": [0, 17], "2": [0, 16]}
    assert c["mcnemar_per_seed"]["1"]["p"] == pytest.approx(stats.binomtest(0, 17).pvalue)
    assert c["p_seeds"] == pytest.approx(stats.ttest_rel([2 / 20, 1 / 20, 3 / 20], [1.0, 0.9, 0.95]).pvalue)
    # Holm over every seed-level test of the report: the smallest of m p-values is multiplied by m
    tested = sorted(x["p_seeds"] for x in comps if x["p_seeds"] is not None)
    assert c["n_tests"] == len(tested) and min(x["p_holm"] for x in comps) == pytest.approx(min(1.0, tested[0] * len(tested)))
    cacc = next(c for c in comps if (c["defense"], c["baseline"], c["metric"]) == ("mb_defense", "finetune", "cacc"))
    assert cacc["delta"] == 0 and cacc["p_seeds"] == 1.0 and cacc["p_holm"] == 1.0  # identical: n.s.
    assert mcnemar_p(np.array([1, 1, 0]), np.array([0, 1, 1])) == (1.0, 1, 1)
    assert paired_t_p([0.5], [0.1]) is None
    # the same non-zero difference on every seed: no variance for t; the exact sign-flip p, 2 of 2^n sign patterns
    assert paired_t_p([0.99, 0.99], [1.0, 1.0]) == 0.5 and paired_t_p([0.1] * 5, [0.6] * 5) == 2 / 32
    md = build_report([tmp_path], tmp_path / "rep")["paired_markdown"]
    row = next(line for line in md.splitlines() if "| ASR | mb_defense | finetune |" in line)
    assert "-0.850" in row and "(n.s.)" not in row.split("|")[-3]
    assert "1 (n.s.)" in next(line for line in md.splitlines() if "| CACC | mb_defense | finetune |" in line)
    assert "Paired comparisons" in (tmp_path / "rep" / "report.md").read_text()


def test_holm_correction_matches_its_definition():
    from mbdef.report.paired import holm

    comps = [{"p_seeds": p} for p in (0.01, 0.04, 0.03)] + [{"p_seeds": None}]
    holm(comps)
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, max(0.03, 2 x 0.03) = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert [round(c["p_holm"], 10) for c in comps[:3]] == [0.03, 0.06, 0.06] and comps[3]["p_holm"] is None


def test_paired_comparisons_match_swept_knobs_but_not_a_controls_own_settings(tmp_path):
    from mbdef.report.paired import paired_comparisons

    for s in range(2):
        for cs, (ft, mb) in {64: (0.9, 0.5), 128: (0.8, 0.1)}.items():
            fake_job(tmp_path, f"ft{cs}_{s}", "badnet", "finetune", s, ft, 0.8, clean_size=cs)
            fake_job(tmp_path, f"mb{cs}_{s}", "badnet", "mb_defense", s, mb, 0.8, clean_size=cs,
                     stage2_trigger_fraction=1.0)
        fake_job(tmp_path, f"plain{s}", "badnet", "mb_plain_finetune", s, 0.95, 0.8, clean_size=128,
                 stage2_trigger_fraction=0.0)
    runs = load_runs([tmp_path])
    rows, knobs = aggregate(runs)
    assert knobs == ["defense.clean_size"]
    comps = [c for c in paired_comparisons(runs, knobs, metrics=("asr",)) if c["defense"] == "mb_defense"]
    got = {(c["defense.clean_size"], c["baseline"]): round(c["delta"], 3) for c in comps}
    # the same clean size only; the control's fixed stage2_trigger_fraction=0 does not block its comparison
    assert got == {(64, "finetune"): -0.4, (128, "finetune"): -0.7, (128, "mb_plain_finetune"): -0.85}


def test_evidence_keeps_the_never_backdoored_reference_apart(tmp_path):
    from mbdef.report.evidence import evidence, evidence_markdown

    for s, n_poisoned, asr in [(0, 0, [0.0, 0.0]), (0, 1600, [1.0, 1.0]), (1, 0, [0.0, 0.5])]:
        d = fake_job(tmp_path, f"r{s}_{n_poisoned}", "badnet", "none", s, asr[0], 0.9)
        r = json.loads((d / "results.json").read_text())
        r.update(poison={"n_poisoned": n_poisoned}, reactivation={"step": [0, 5], "asr": asr},
                 trigger_variants={"lowercase": asr[0]})
        (d / "results.json").write_text(json.dumps(r))
    rows = {r["defense"]: r for r in evidence(load_runs([tmp_path]))}
    assert set(rows) == {"clean model", "none"} and rows["clean model"]["n"] == 2
    assert rows["clean model"]["reactivation_asr"] == [0.0, 0.25] and rows["none"]["reactivation_asr"] == [1.0, 1.0]
    assert "| tiny | badnet | clean model | 2 |" in evidence_markdown(list(rows.values()))


def test_wandb_report_spec_and_panels_for_a_sweep(tmp_path, monkeypatch, capsys):
    """The W&B report of a sweep names exactly its attacks, defenses and seeds, and its panels read the keys the
    tracker writes: summary metrics grouped by the defense's config name, stage curves, runs of this sweep only."""
    from wandb_workspaces import expr

    from mbdef.report.cli import main
    from mbdef.report.wandb_report import report_spec, wandb_report

    for seed in (3, 4):
        for attack, defense in [("badnet", "mb_defense"), ("badnet", "none"), ("vpi", "oracle_unlearn"), ("vpi", "none")]:
            d = fake_job(tmp_path, f"{attack}-{defense}-{seed}", attack, defense, seed, 0.5, 0.9,
                         extra={"stage2": {"steps": 4}} if defense != "none" else None)
            cfg = yaml.safe_load((d / "resolved_config.yaml").read_text())
            (d / "resolved_config.yaml").write_text(yaml.safe_dump({**cfg, "sweep_id": "qs", "logger": {"project": "p"}}))
    other = fake_job(tmp_path, "other", "badnet", "none", 9, 1.0, 0.9)  # another sweep: never in this report
    (other / "resolved_config.yaml").write_text(yaml.safe_dump({"seed": 9, "sweep_id": "other"}))
    runs = load_runs([tmp_path])

    spec = report_spec(runs, "qs")
    assert [s["attack"] for s in spec["sections"]] == ["badnet", "vpi"]
    badnet, vpi = spec["sections"]
    assert badnet["defenses"] == ["none", "mb_defense"] and badnet["seeds"] == [3, 4] and badnet["n_runs"] == 4
    assert vpi["defenses"] == ["none", "oracle_unlearn"] and vpi["positive_controls"] == ["oracle_unlearn"]
    assert badnet["metrics"] == ["asr", "cacc", "false_trigger_rate"]  # what these results hold, nothing else
    assert badnet["curves"] == ["stage1/loss", "stage2/loss"]
    with pytest.raises(ValueError, match="no finished job of sweep 'nope'.*other, qs"):
        report_spec(runs, "nope")

    report = wandb_report(spec, entity="", project="p")
    grids = [b for b in report.blocks if type(b).__name__ == "PanelGrid"]
    assert len(grids) == 2
    bars = [p for p in grids[0].panels if type(p).__name__ == "BarPlot"]
    assert [p.metrics for p in bars] == [["asr"], ["cacc"], ["false_trigger_rate"]]
    assert all(p.groupby == expr.Config("defense.name") and p.groupby_rangefunc == "minmax" for p in bars)
    lines = [p for p in grids[0].panels if type(p).__name__ == "LinePlot"]
    assert [p.y for p in lines] == [["stage1/loss"], ["stage2/loss"]]
    assert grids[1].runsets[0].filters == """Metric("Group") == 'qs' and Metric("Tags") in ['attack:vpi']"""

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--wandb"])
    assert stop.value.code == 2 and "name one sweep; found other, qs" in capsys.readouterr().err
    assert main([str(tmp_path), "--wandb", "qs"]) == 0
    out = capsys.readouterr().out
    assert "badnet: 4 runs; defenses none, mb_defense; seeds 3, 4" in out and "not saved: no W&B key" in out
