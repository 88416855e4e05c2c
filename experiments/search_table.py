"""A design search's table (hparams_search, hydra_plugins/mbdef_optuna_sweeper): one row per trial with its
point, the objective per seed and its mean, the constrained metrics' means and whether the trial meets the
bounds, then the best feasible trial, from the `search.yaml` the sweeper writes after every trial.

    python experiments/search_table.py docs/runs/search_mb_defense_real [--out table.md]

The per-seed values are each seed's own model on the tuning prompts; with a handful of seeds a difference
between two trials smaller than their seeds' spread is not evidence that one design is better.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from paper_table import cli  # experiments/ is on the path when this runs as a script


def short(key: str) -> str:
    """`defense.n_triggers` -> `n_triggers`, `trainer.stage2.learning_rate` -> `stage2.learning_rate`."""
    return key.split(".", 1)[1] if key.split(".")[0] in ("defense", "trainer") else key


def cell(v) -> str:
    """A param or mean: small rates and learning rates to 3 significant digits, the rest to 3 decimals."""
    if v is None:
        return "–"
    if not isinstance(v, float):
        return str(v)
    if v and abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def bound(b) -> str:
    """The sweeper's bound (a number is a ceiling; {min: x} / {max: x}) as text."""
    if isinstance(b, (int, float)):
        return f"≤ {b:g}"
    return " and ".join(f"{'≥' if k == 'min' else '≤'} {v:g}" for k, v in b.items())


def table(dirs: list[str]) -> str:
    out = []
    for d in dirs:
        path = Path(d) / "search.yaml"
        if not path.is_file():
            raise SystemExit(f"{path}: no search.yaml (not a search sweep, or no trial finished yet)")
        s = yaml.safe_load(path.read_text())
        params = list(dict.fromkeys(k for t in s["trials"] for k in t["params"]))
        bounds = s["constraints"]
        out += [f"## Study `{s['study']}`: {s['direction']} mean `{s['objective']}` over seeds {s['seeds']}", "",
                "Bounds on the means: " + ", ".join(f"{k} {bound(b)}" for k, b in bounds.items()) + ".", ""]
        head = ["trial", *map(short, params), f"{s['objective']} per seed", "mean", *bounds, "feasible"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in s["trials"]:
            if t["state"] != "COMPLETE":
                out.append(f"| {t['number']} | " + " | ".join(cell(t["params"].get(k)) for k in params)
                           + f" | {t['state'].lower()} |" + " |" * (2 + len(bounds)))
                continue
            means = t["constrained"] or {}
            out.append("| " + " | ".join([str(t["number"]), *(cell(t["params"].get(k)) for k in params),
                                         " ".join(f"{v:.2f}" for v in t["values"]), f"{t['value']:.3f}",
                                         *(cell(means.get(k)) for k in bounds),
                                         "yes" if t["feasible"] else "no"]) + " |")
        done = sum(t["state"] == "COMPLETE" for t in s["trials"])
        best = s["best"]
        out += ["", f"{done} complete trial(s); best feasible: " +
                (f"trial {best['number']}, mean {s['objective']} {best['value']:.3f}" if best else "none yet"), ""]
    return "\n".join(out).rstrip()


if __name__ == "__main__":
    cli(table, __doc__)
