"""Turn many results.json files into one comparison: rows per (model, attack, defense, knob values), mean ±
std and a 95 % t-interval over seeds, plus the jobs that did not finish.

The seed is the unit of replication (each seed trains its own models); prompts are nested in seeds and
already averaged into each seed's metric. A t-interval over n seeds has its stated coverage when the
per-seed metrics are roughly normal; a percentile bootstrap over 3-5 seeds covers far less than 95 %."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from mbdef.keys import METRICS, defense_rank, flatten, is_non_defining
from mbdef.results import RunResults

def load_runs(dirs: list[str | Path]) -> list[dict]:
    """One entry per finished job: its results and its flattened resolved config."""
    runs = []
    for root in map(Path, dirs):
        for res in sorted(root.rglob("results.json")):
            if "superseded" in res.relative_to(root).parts:
                continue
            cfg_file = res.parent / "resolved_config.yaml"
            cfg = flatten(yaml.safe_load(cfg_file.read_text()), lists_as_json=True) if cfg_file.is_file() else {}
            runs.append({"results": RunResults.check(json.loads(res.read_text()), str(res)), "config": cfg, "dir": str(res.parent)})
    return runs


def unfinished_jobs(dirs: list[str | Path]) -> list[str]:
    """Job dirs that started (Hydra config or RUNNING.json present) but have no COMPLETE.json."""
    out = []
    for root in map(Path, dirs):
        for marker in list(root.rglob("RUNNING.json")) + list(root.rglob(".hydra")):
            job = marker.parent
            if "superseded" in job.relative_to(root).parts or (job / "COMPLETE.json").is_file():
                continue
            if (job / "results.json").is_file() and not (job / "RUNNING.json").is_file():
                continue  # finished before COMPLETE.json existed (older mbdef)
            out.append(str(job))
    return sorted(set(out))


def _identity(run: dict) -> tuple:
    r = run["results"]
    return (r.get("model"), r.get("attack"), r.get("defense"))


def varying_knobs(runs: list[dict]) -> list[str]:
    """Config keys that take more than one value among runs of the same (model, attack, defense):
    the ablation axes of a sweep (e.g. defense.n_triggers), seeds excluded."""
    groups = defaultdict(list)
    for run in runs:
        groups[_identity(run)].append(run["config"])
    knobs = set()
    for cfgs in groups.values():
        keys = set().union(*cfgs) if cfgs else set()
        for k in keys:
            if is_non_defining(k) or k.split(".")[-1] == "seed":  # seeds are aggregated over
                continue
            if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in cfgs}) > 1:
                knobs.add(k)
    return sorted(knobs)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean over seeds (None for fewer than 2 values); clipped to what a rate
    can take only by the reader, never here."""
    if len(values) < 2:
        return None
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def aggregate(runs: list[dict]) -> tuple[list[dict], list[str]]:
    knobs = varying_knobs(runs)
    groups = defaultdict(list)
    for run in runs:
        groups[_identity(run) + tuple(run["config"].get(k) for k in knobs)].append(run)
    rows = []
    for key, members in groups.items():
        members.sort(key=lambda x: x["results"].get("seed"))
        row = {"model": key[0], "attack": key[1], "defense": key[2], **dict(zip(knobs, key[3:])),
               "n": len(members), "seeds": [m["results"].get("seed") for m in members]}
        for m in METRICS:
            # aligned with row["seeds"] (None where a seed lacks the metric): with few seeds, tables show each
            per_seed = [x["results"].get(m) if isinstance(x["results"].get(m), (int, float)) else None for x in members]
            vals = [v for v in per_seed if v is not None]
            if not vals:
                continue
            row[f"{m}_per_seed"] = per_seed
            row[m] = float(np.mean(vals))
            row[f"{m}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            ci = t_interval(vals)
            row[f"{m}_ci"] = list(ci) if ci else None
        rows.append(row)
    rows.sort(key=lambda r: (str(r["model"]), str(r["attack"]), defense_rank(r["defense"]),
                             *[knob_order(r.get(k)) for k in knobs]))
    return rows, knobs


def knob_order(value) -> tuple:
    """Sort key for a knob value: numbers by value (25 before 100), then everything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))
