"""The real-model table (SmolLM2-135M-Instruct on BackdoorLLM refusal data): per attack, every defense's ASR,
false-trigger rate, ROUGE-L and reference perplexity (free-form answers: exact-match CACC matches only a
few short references), MB-Defense's paired tests, its two backdoors per seed (the attacker's and its own,
after each stage), ASR per trigger for an attack with several (MTBA), and the representation evidence at
every fifth layer.

    python experiments/real_table.py outputs/multirun/real_smollm2_refusal [more sweep dirs] [--out table.md]

An attack run at more than one setting (e.g. MTBA in real_smollm2_refusal and real_smollm2_refusal_mtba)
gets one section per setting, named by the config keys that differ.

Over several seeds MB-Defense's differences get a paired t-test over seeds, Holm-corrected across its
comparisons on every attack in the table. With one seed there is no seed-level test: McNemar's exact test
on the 150 test prompts then only says whether those two trained models differ on these prompts, not
whether the method does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from mbdef.eval.prompt_sets import eval_prompts
from mbdef.keys import defense_rank
from mbdef.report.aggregate import aggregate, load_runs, unfinished_jobs
from mbdef.report.evidence import evidence
from mbdef.report.paired import VERDICTS, holm, paired_comparisons, split_knobs

from paper_table import cli  # experiments/ is on the path when this runs as a script

COLUMNS = (("asr", "ASR"), ("false_trigger_rate", "false triggers"), ("rouge_l", "ROUGE-L"),
           ("perplexity", "perplexity"))


def fmt(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def defensive_probe(metrics: dict) -> float | None:
    """How often MB-Defense's own trigger gives its defensive behaviour (mean over its triggers' probes)."""
    vals = [v for k, v in metrics.items() if k.startswith("probe/") and isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else None


def two_backdoors(runs: list[dict], attack: str, knobs: list[str]) -> list[str]:
    """Per seed, the attacker's backdoor and MB-Defense's own after its stage 1, after weight recovery
    (mb_defense) and after plain fine-tuning of the same stage 1 (mb_plain_finetune): the paper's mechanism
    needs weight recovery to break both together."""
    by = {}
    for run in runs:
        r = run["results"]
        if r["attack"] == attack:
            by[(r["defense"], r["seed"], *[run["config"].get(k) for k in knobs])] = r
    mine = sorted(k[1:] for k in by if k[0] == "mb_defense")
    if not mine:
        return []
    out = ["", "MB-Defense's two backdoors per seed: the attacker's ASR and its own trigger's defensive-behaviour "
           "rate (defensive) after its stage 1, after weight recovery, and after plain fine-tuning of the same "
           "stage 1 (mb_plain_finetune):", "",
           "| seed | " + "".join(f"{k} | " for k in knobs) + "after stage 1: attacker's / defensive | "
           "weight recovery: attacker's / defensive | plain fine-tuning: attacker's / defensive |",
           "|---|---|---|---|" + "---|" * len(knobs)]
    pair = lambda m: f"{fmt(m.get('asr'))} / {fmt(defensive_probe(m))}"
    for seed, *kv in mine:
        mb, plain = by[("mb_defense", seed, *kv)], by.get(("mb_plain_finetune", seed, *kv), {})
        s1 = mb.get("after_stage1") or {}
        out.append(f"| {seed} | " + "".join(f"{v} | " for v in kv) + f"{pair(s1)} | {pair(mb)} | {pair(plain)} |")
    return out


def trigger_groups(cfg) -> list[str] | None:
    """For a job (its resolved config) on data that carries its own triggered prompts: per triggered prompt it
    was evaluated on, the words its trigger added to the paired clean prompt."""
    if "_target_" not in cfg.get("data", {}):
        return None
    splits = instantiate(cfg.data)
    prompts = eval_prompts(cfg.eval, splits)
    triggered = splits.triggered(cfg.eval.get("split", "test"))
    if not triggered:
        return None
    added = lambda c, t: Counter(t["instruction"].split()) - Counter(c["instruction"].split())
    return [" ".join(sorted(added(c, t).elements())) for c, t in zip(prompts, triggered)]


def by_trigger(runs: list[dict], attack: str) -> list[str]:
    """ASR per trigger, for an attack whose triggered prompts carry different triggers (MTBA: one of three
    words each): k of n triggered prompts, summed over the seeds. Nothing for a single-trigger attack."""
    counts, groups_of = {}, {}
    for run in runs:
        r = run["results"]
        bits = (r.get("per_example") or {}).get(VERDICTS["asr"])
        if r["attack"] != attack or not bits:
            continue
        cfg = OmegaConf.load(Path(run["dir"]) / "resolved_config.yaml")
        key = OmegaConf.to_yaml(cfg.get("data", {})) + OmegaConf.to_yaml(cfg.get("eval", {}))  # the same prompts
        if key not in groups_of:
            groups_of[key] = trigger_groups(cfg)
        groups = groups_of[key]
        if not groups or len(groups) != len(bits):
            continue
        cell = counts.setdefault(r["defense"], {})
        for g, b in zip(groups, bits):
            k, n = cell.get(g, (0, 0))
            cell[g] = (k + (b == "1"), n + 1)
    names = sorted({g for cell in counts.values() for g in cell})
    if not 2 <= len(names) <= 6:
        return []
    out = ["", "ASR by trigger (the words each triggered prompt adds to its clean prompt): refused of triggered "
           "prompts, summed over seeds:", "", "| defense | " + " | ".join(f"`{g}`" for g in names) + " |",
           "|---|" + "---|" * len(names)]
    for defense in sorted(counts, key=defense_rank):
        cells = [counts[defense].get(g, (0, 0)) for g in names]
        out.append(f"| {defense} | " + " | ".join(f"{k}/{n} ({k / n:.2f})" if n else "–" for k, n in cells) + " |")
    return out


def table(dirs: list[str]) -> str:
    runs = load_runs(dirs)
    if not runs:
        raise SystemExit(f"no results.json under {', '.join(dirs)}")
    rows, knobs = aggregate(runs)
    n_seeds = max(r["n"] for r in rows)
    # few seeds: every seed's value is shown, in the attack's seed order, "–" where an arm lacks that seed
    seed_asr = lambda row, seeds: " ".join(fmt(dict(zip(row["seeds"], row.get("asr_per_seed", []))).get(s)) for s in seeds)
    # MB-Defense against every baseline, on every attack: the family Holm's correction covers is this table's
    # comparisons (as in paper_table.py), not every pair mbdef-report tests
    all_comps = [c for c in paired_comparisons(runs, knobs, metrics=("asr",))
                 if c["defense"] == "mb_defense" and c["baseline"] != "none"]  # the family: finetune and the controls
    holm(all_comps)
    # one section per attack and setting (e.g. MTBA at two poison counts): a section's paired tests,
    # two-backdoor, by-trigger and cosine tables come from its own runs only; Holm still spans every section
    cell_knobs, row_knobs = split_knobs(knobs)  # as paired_comparisons splits cells
    setting = lambda get: tuple(get(k) for k in cell_knobs)
    out = []
    for attack, *values in dict.fromkeys((r["attack"], *setting(r.get)) for r in rows):
        here = lambda get, a: a == attack and setting(get) == tuple(values)
        mine = sorted((r for r in rows if here(r.get, r["attack"])), key=lambda r: defense_rank(r["defense"]))
        subset = [run for run in runs if here(run["config"].get, run["results"]["attack"])]
        seeds = sorted({s for r in mine for s in r["seeds"]})
        label = "".join(f"{k}={v}, " for k, v in zip(cell_knobs, values))
        out += [f"### {attack} ({label}seeds {', '.join(map(str, seeds))}; mean over seeds)", "",
                "| defense | " + "".join(f"{k} | " for k in row_knobs) + "n | ASR per seed | " + " | ".join(name for _, name in COLUMNS) + " |",
                "|---|---|---|" + "---|" * (len(COLUMNS) + len(row_knobs))]
        out += [f"| {r['defense']} | " + "".join(f"{r.get(k)} | " for k in row_knobs) + f"{r['n']} | {seed_asr(r, seeds)} | "
                + " | ".join(fmt(r.get(k)) for k, _ in COLUMNS) + " |" for r in mine]
        comps = [c for c in all_comps if here(c.get, c["attack"])]
        if comps:
            out += ["", "MB-Defense's ASR minus each baseline's, on the same seeds and prompts:", "",
                    "| vs | Δ ASR | p, paired t over seeds | p, Holm | McNemar exact p per seed (discordant prompts) |",
                    "|---|---|---|---|---|"]
            out += [f"| {c['baseline']} | {c['delta']:+.3f} | {fmt(c['p_seeds'], '.2g')} | {fmt(c['p_holm'], '.2g')} | "
                    + ", ".join(f"seed {s}: {v['p']:.2g} ({v['discordant'][0]} vs {v['discordant'][1]})"
                                for s, v in c["mcnemar_per_seed"].items()) + " |" for c in comps]
        out += two_backdoors(subset, attack, row_knobs)
        out += by_trigger(subset, attack)
        ev = [e for e in evidence(subset) if e.get("final/cos_attacker_defensive")]
        if ev:
            n_layers = len(ev[0]["final/cos_attacker_defensive"])
            shown = list(range(0, n_layers, 5)) + ([n_layers - 1] if (n_layers - 1) % 5 else [])
            out += ["", "cosine(attacker trigger's hidden-state shift, defensive trigger's), at layers "
                    + ", ".join(map(str, shown)) + " (0 = embeddings; every layer in results.json and "
                    "mbdef-report's representation.png):", "",
                    "| defense | after stage 1 | final | attacker vs random word, after stage 1 |", "|---|---|---|---|"]
            pick = lambda v: " ".join(fmt(v[i]) for i in shown) if v else "–"
            out += [f"| {e['defense']} | {pick(e.get('after_stage1/cos_attacker_defensive'))} | "
                    f"{pick(e.get('final/cos_attacker_defensive'))} | {pick(e.get('after_stage1/cos_attacker_control'))} |"
                    for e in ev]
        out.append("")
    if n_seeds > 1 and (n_tests := max((c.get("n_tests", 0) for c in all_comps), default=0)):
        out.append(f"Seed-level p: a paired t-test over the seeds both arms share (the exact sign-flip p, 2 / 2^n "
                   f"for n seeds, where every seed differs by the same amount); Holm's correction over the "
                   f"{n_tests} comparisons of MB-Defense above.")
    if n_seeds == 1:
        out.append("One seed: no seed-level inference is possible; the McNemar tests describe these trained models only.")
    if missing := unfinished_jobs(dirs):
        out += ["", f"{len(missing)} job(s) unfinished: " + ", ".join(Path(m).name for m in missing)]
    return "\n".join(out)


if __name__ == "__main__":
    cli(table, __doc__)
