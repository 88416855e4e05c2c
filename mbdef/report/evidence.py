"""Evidence beyond ASR, averaged over seeds per (model, attack, defense): representation similarity per stage,
the re-activation curve and ASR under trigger variants; as markdown and two PNGs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mbdef.keys import defense_rank


def _mean(vals: list) -> list | float | None:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return np.mean(np.asarray(vals, float), axis=0).tolist()


def evidence(runs: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for run in runs:
        r = run["results"]
        if r.get("representation") or r.get("reactivation") or r.get("trigger_variants"):
            # a run of an attack with nothing poisoned is the never-backdoored reference, not "none"
            clean = (r.get("poison") or {}).get("n_poisoned") == 0
            groups[(r.get("model"), r.get("attack"), "clean model" if clean else r.get("defense"))].append(r)
    out = []
    for (model, attack, defense), rs in groups.items():
        row = {"model": model, "attack": attack, "defense": defense, "n": len(rs)}
        for stage in ("after_stage1", "final"):
            reps = [(r.get("representation") or {}).get(stage) or {} for r in rs]
            for key in ("cos_attacker_defensive", "cos_attacker_control"):
                row[f"{stage}/{key}"] = _mean([x.get(key) for x in reps])
            last = [str(max(map(int, x["probe"]))) if x.get("probe") else None for x in reps]
            row[f"{stage}/probe_attacker"] = _mean([x["probe"][k].get("attacker") if k else None
                                                    for x, k in zip(reps, last)])
            row[f"{stage}/probe_control"] = _mean([x["probe"][k].get("control") if k else None
                                                   for x, k in zip(reps, last)])
        react = [r["reactivation"] for r in rs if r.get("reactivation")]
        if react and all(x["step"] == react[0]["step"] for x in react):
            row["reactivation_steps"] = react[0]["step"]
            row["reactivation_asr"] = _mean([x["asr"] for x in react])
        variants = [r["trigger_variants"] for r in rs if r.get("trigger_variants")]
        if variants:
            row["trigger_variants"] = {k: _mean([v.get(k) for v in variants]) for k in variants[0]}
        out.append(row)
    rank = lambda d: (-1, "") if d == "clean model" else defense_rank(d)  # the never-backdoored reference first
    return sorted(out, key=lambda x: (str(x["model"]), str(x["attack"]), rank(x["defense"])))


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def evidence_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = ["model", "attack", "defense", "n", "cos(att, def) stage 1 / final", "cos(att, random word) stage 1 / final",
            "probe: attacker looks triggered, stage 1 / final", "re-activation ASR by step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cos = lambda key: " / ".join(_f(r[f"{s}/{key}"][-1] if r.get(f"{s}/{key}") else None)
                                     for s in ("after_stage1", "final"))
        probe = " / ".join(_f(r.get(f"{s}/probe_attacker")) for s in ("after_stage1", "final"))
        react = (", ".join(f"{s}: {_f(a)}" for s, a in zip(r["reactivation_steps"], r["reactivation_asr"]))
                 if r.get("reactivation_asr") else "-")
        lines.append(f"| {r['model']} | {r['attack']} | {r['defense']} | {r['n']} | {cos('cos_attacker_defensive')} | "
                     f"{cos('cos_attacker_control')} | {probe} | {react} |")
    text = "\n".join(lines) + (
        "\n\nMeans over seeds. cos = cosine between mean hidden-state shifts at the last prompt token, last layer "
        "(per-layer curves in representation.png and results.json); 'def' = the defense's triggers, or MB-Defense's "
        "default triggers of the seed for defenses without any. Re-activation: ASR after n steps of fine-tuning the "
        "final model on attacker-poisoned samples (its weights restored after).")
    variant_rows = [r for r in rows if r.get("trigger_variants")]
    if variant_rows:
        names = list(dict.fromkeys(k for r in variant_rows for k in r["trigger_variants"]))
        text += "\n\nASR under trigger variants\n\n| attack | defense | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 2)
        for r in variant_rows:
            text += f"\n| {r['attack']} | {r['defense']} | " + " | ".join(_f(r["trigger_variants"].get(k)) for k in names) + " |"
    return text


def evidence_plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    colors = {d: plt.cm.tab10(i % 10) for i, d in enumerate(defenses)}
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    rep_rows = [r for r in rows if r.get("final/cos_attacker_defensive")]
    if rep_rows:
        fig, axes = plt.subplots(1, len(attacks), figsize=(5.5 * len(attacks), 4), squeeze=False)
        for ax, a in zip(axes[0], attacks):
            for r in (x for x in rep_rows if x["attack"] == a):
                for stage, style in (("after_stage1", "-"), ("final", ":")):
                    y = r.get(f"{stage}/cos_attacker_defensive")
                    if y:
                        ax.plot(range(len(y)), y, style, marker="o", color=colors[r["defense"]],
                                label=f"{r['defense']} ({'stage 1' if stage == 'after_stage1' else 'final'})")
                ctrl = r.get("after_stage1/cos_attacker_control")
                if ctrl and r["defense"] == "none":
                    ax.plot(range(len(ctrl)), ctrl, "--", color="gray", label="none: attacker vs random word")
            ax.set(xlabel="layer (0 = embeddings)", ylabel="cosine(attacker shift, defensive shift)",
                   title=f"{a}: do the triggers merge?", ylim=(-0.2, 1.05))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        written.append(out / "representation.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    react_rows = [r for r in rows if r.get("reactivation_asr")]
    if react_rows:
        fig, axes = plt.subplots(1, len(attacks), figsize=(5.5 * len(attacks), 4), squeeze=False)
        for ax, a in zip(axes[0], attacks):
            for r in (x for x in react_rows if x["attack"] == a):
                ax.plot(r["reactivation_steps"], r["reactivation_asr"], marker="o", color=colors[r["defense"]],
                        label=r["defense"])
            ax.set(xlabel="fine-tuning steps on attacker-poisoned samples", ylabel="ASR",
                   title=f"{a}: re-activation", ylim=(-0.05, 1.05))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "reactivation.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written
