"""Write an aggregated comparison as markdown, CSV and PNG plots."""

from __future__ import annotations

import csv
from pathlib import Path

from mbdef.keys import POSITIVE_CONTROLS
from mbdef.keys import METRICS

SHOWN = ("asr", "triggered_cacc", "cacc", "false_trigger_rate")  # a low ASR with a low triggered CACC is no recovery


HEAD = {"false_trigger_rate": "FTR", "triggered_cacc": "triggered CACC"}


def _cell(row: dict, m: str) -> str:
    if row.get(m) is None:
        return "-"
    text = f"{row[m]:.3f}"
    if row["n"] > 1:
        text += f" ± {row[f'{m}_std']:.3f}"
        if row.get(f"{m}_ci"):
            lo, hi = row[f"{m}_ci"]
            text += f" [{lo:.2f}, {hi:.2f}]"
    return text


def markdown(rows: list[dict], knobs: list[str], unfinished: list[str] = ()) -> str:
    cols = ["model", "attack", "defense", *knobs, "n"]
    head = cols + [HEAD.get(m, m.upper()) for m in SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([str(r.get(c)) for c in cols] + [_cell(r, m) for m in SHOWN]) + " |")
    text = "\n".join(lines)
    text += ("\n\nmean ± std over seeds [95 % t-interval of the mean over seeds]; triggered CACC = exact answers on "
             "triggered prompts (a triggered prompt answered with garbage is not a recovered model); "
             "FTR = false-trigger rate on clean prompts."
             if any(r["n"] > 1 for r in rows) else "")
    if controls := sorted({r["defense"] for r in rows} & set(POSITIVE_CONTROLS)):
        text += (f"\n\n{', '.join(controls)}: a positive control, not a defense: it reads the attacker's trigger, "
                 "which no real defender knows, and shows what removing the backdoor at this budget looks like.")
    if unfinished:
        text += f"\n\n**{len(unfinished)} job(s) did not finish** (no COMPLETE.json; re-run the sweep to resume them):\n"
        text += "\n".join(f"- {u}" for u in unfinished)
    return text


def write_csv(rows: list[dict], knobs: list[str], path: Path) -> None:
    cols = ["model", "attack", "defense", *knobs, "n", "seeds"]
    for m in METRICS:
        cols += [m, f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            flat = dict(r, seeds=" ".join(map(str, r["seeds"])))
            for m in METRICS:
                ci = r.get(f"{m}_ci") or (None, None)
                flat[f"{m}_ci_low"], flat[f"{m}_ci_high"] = ci
            w.writerow(flat)


def plots(rows: list[dict], knobs: list[str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in rows if r.get("cacc") is not None]
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    colors = {d: plt.cm.tab10(i % 10) for i, d in enumerate(defenses)}
    markers = dict(zip(attacks, "osD^vP*Xh<>"))

    attacked = [r for r in rows if r.get("asr") is not None]
    if attacked:  # ASR vs CACC: the trade-off, one point per row
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for r in attacked:
            ax.errorbar(r["cacc"], r["asr"], xerr=r.get("cacc_std") or 0, yerr=r.get("asr_std") or 0,
                        fmt=markers.get(r["attack"], "o"), color=colors[r["defense"]], capsize=2, ms=7, alpha=0.85)
        for d in defenses:
            ax.plot([], [], "o", color=colors[d], label=f"defense: {d}")
        for a in attacks:
            ax.plot([], [], markers.get(a, "o"), color="gray", label=f"attack: {a}")
        ax.set(xlabel="CACC (clean accuracy) →", ylabel="ASR (attack success) ↓", ylim=(-0.05, 1.05),
               title="ASR vs CACC (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        written.append(out / "asr_vs_cacc.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

        # ASR per attack, bars per defense (rows differing only by knobs are averaged into the first)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.8 / max(len(defenses), 1)
        for ax, metric in zip(axes, ("asr", "cacc")):
            for j, d in enumerate(defenses):
                vals = [next((r for r in attacked if r["attack"] == a and r["defense"] == d), None) for a in attacks]
                ax.bar([i + j * width for i in range(len(attacks))], [v[metric] if v else 0 for v in vals], width,
                       yerr=[(v.get(f"{metric}_std") or 0) if v else 0 for v in vals], color=colors[d], label=d,
                       capsize=2)
            ax.set_xticks([i + width * (len(defenses) - 1) / 2 for i in range(len(attacks))], attacks)
            ax.set(ylabel=metric.upper(), ylim=(0, 1.2), title=f"{metric.upper()} per attack (mean ± std)")
            ax.grid(axis="y", alpha=0.3)
        # one legend under both panels: with seven defenses a legend inside a panel squeezes its axes
        handles, labels = axes[0].get_legend_handles_labels()
        rows_of_legend = -(-len(defenses) // 4)
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(defenses), 4))
        fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
        written.append(out / "asr_per_attack.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    for knob in knobs:  # ablation curves: ASR and CACC against each numeric knob
        pts = [r for r in rows if isinstance(r.get(knob), (int, float)) and not isinstance(r.get(knob), bool)]
        if len({r[knob] for r in pts}) < 2:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, metric in zip(axes, ("asr", "cacc")):
            for (a, d, rest) in dict.fromkeys((r["attack"], r["defense"], _others(r, knobs, knob)) for r in pts):
                line = sorted((r for r in pts if (r["attack"], r["defense"], _others(r, knobs, knob)) == (a, d, rest)
                               and r.get(metric) is not None), key=lambda r: r[knob])
                if line:
                    ax.errorbar([r[knob] for r in line], [r[metric] for r in line],
                                yerr=[r.get(f"{metric}_std") or 0 for r in line], marker=markers.get(a, "o"),
                                color=colors[d], capsize=2, label=f"{a} / {d}{_label(rest)}")
            ax.set(xlabel=knob, ylabel=metric.upper(), ylim=(-0.05, 1.05), title=f"{metric.upper()} vs {knob}")
            values = sorted({r[knob] for r in pts})
            if log_axis(values):  # e.g. 32..512 samples or 0.5..10 % poison: equal ratios, equal spacing
                ax.set_xscale("log")
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.minorticks_off()
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        written.append(out / f"ablation_{knob.replace('.', '_')}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
        if any(r.get("asr") is not None for r in pts):
            written.append(_tradeoff(plt, pts, knob, knobs, attacks, colors, out))
    return written


def log_axis(values: list[float]) -> bool:
    """Plot a knob on a log axis when its values are positive and span a ratio of 8 or more."""
    return len(values) >= 3 and min(values) > 0 and max(values) / min(values) >= 8


def _others(row: dict, knobs: list[str], knob: str) -> tuple:
    """The row's values of the knobs other than `knob`: one curve per combination, never a line across them."""
    return tuple((k, row.get(k)) for k in knobs if k != knob and row.get(k) is not None)


def _label(rest: tuple) -> str:
    return "".join(f", {k.split('.')[-1]}={v:g}" if isinstance(v, (int, float)) else f", {k.split('.')[-1]}={v}"
                   for k, v in rest)


def _tradeoff(plt, pts: list[dict], knob: str, knobs: list[str], attacks: list[str], colors: dict, out: Path) -> Path:
    """ASR vs CACC as one curve per defense, traced along `knob` (e.g. the stage-2 budget), a panel per attack:
    which method reaches a low ASR at the least clean-accuracy cost."""
    attacks = [a for a in attacks if any(r["attack"] == a and r.get("asr") is not None for r in pts)]
    fig, axes = plt.subplots(1, len(attacks), figsize=(5.5 * len(attacks), 4.5), squeeze=False)
    for ax, a in zip(axes[0], attacks):
        styles = iter(["-", "--", ":", "-."] * 8)
        curves = dict.fromkeys((r["defense"], _others(r, knobs, knob)) for r in pts if r["attack"] == a)
        dash = {rest: next(styles) for rest in dict.fromkeys(rest for _, rest in curves)}
        for d, rest in curves:
            line = sorted((r for r in pts if r["attack"] == a and (r["defense"], _others(r, knobs, knob)) == (d, rest)
                           and r.get("asr") is not None), key=lambda r: r[knob])
            ax.errorbar([r["cacc"] for r in line], [r["asr"] for r in line], xerr=[r.get("cacc_std") or 0 for r in line],
                        yerr=[r.get("asr_std") or 0 for r in line], marker="o", ms=4, color=colors[d], capsize=2,
                        alpha=0.85, ls=dash[rest], label=f"{d}{_label(rest)}")
            for r in line:
                ax.annotate(f"{r[knob]:g}", (r["cacc"], r["asr"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="CACC →", ylabel="ASR ↓", ylim=(-0.05, 1.05), title=f"{a}: ASR vs CACC along {knob}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"tradeoff_{knob.replace('.', '_')}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
