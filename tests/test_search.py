"""hparams_search: the Optuna sweeper runs a study, stores it beside the sweep, and resumes after a stop
without redoing finished trials (hydra_plugins/mbdef_optuna_sweeper)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
import yaml

from hydra_plugins.mbdef_optuna_sweeper.optuna_sweeper import excess_over

# Three trials of one seed each, shrunk to seconds; the space is MB-Defense's (conf/hparams_search/mb_defense.yaml)
# with at most two defensive triggers (each adds a probe set to every evaluation).
TINY = ["hparams_search=mb_defense", "debug=tiny", "logger=none", "hydra.sweeper.seeds=[0]",
        "data.n_pretrain=64", "trainer.pretrain.max_steps=2", "trainer.stage1.max_steps=2",
        "trainer.stage2.max_steps=1", "eval.n_test=4", "eval.max_new_tokens=4", "eval.rouge_l=false",
        "eval.perplexity=false", "eval.random_word_probe=false", "defense.n_triggers=choice(1, 2)"]


def _search(log_dir, n_trials: int):
    return subprocess.run([sys.executable, "-m", "mbdef", *TINY, f"hydra.sweeper.n_trials={n_trials}",
                           f"paths.log_dir={log_dir}"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "WANDB_MODE": "offline"}, cwd=log_dir)


def _finished(sweep):
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob("*/COMPLETE.json")}


def test_a_search_runs_is_stopped_resumes_and_skips_finished_trials(tmp_path):
    sweep = tmp_path / "multirun" / "search_mb_defense"
    first = _search(tmp_path, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    storage = f"sqlite:///{sweep / 'study.db'}"
    study = optuna.load_study(study_name="search_mb_defense", storage=storage)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 2 and len(_finished(sweep)) == 2
    asr = sorted(json.loads(p.read_text())["asr"] for p in sweep.glob("*/results.json"))
    assert sorted(t.value for t in done) == pytest.approx(asr)  # the score is each job's results.json ASR
    # A stop in the middle of the third trial: it stays RUNNING in the study, with its params drawn.
    killed = study.ask(fixed_distributions=done[0].distributions)
    before = _finished(sweep)

    second = _search(tmp_path, 3)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="search_mb_defense", storage=storage)
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 3 and states[killed.number] == "FAIL"
    rerun = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))[-1]
    assert rerun.params == killed.params and rerun.user_attrs["resumes_trial"] == killed.number
    after = _finished(sweep)
    assert len(after) == 3 and all(after[name] == t for name, t in before.items())  # finished jobs untouched
    assert "Launching 1 jobs locally" in second.stderr + second.stdout  # only the interrupted trial ran

    summary = yaml.safe_load((sweep / "search.yaml").read_text())
    assert [t["state"] for t in summary["trials"]].count("COMPLETE") == 3
    means = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    for t in means:  # each feasibility verdict follows from the stored means and the preset's bounds
        ok = t["constrained"]["false_trigger_rate"] <= 0.05 and t["constrained"]["cacc"] >= 0.85
        assert t["feasible"] is ok
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):  # what a constraint-aware sampler reads
        m = t.user_attrs["means"]
        assert t.constraints == pytest.approx({"false_trigger_rate": m["false_trigger_rate"] - 0.05,
                                               "cacc": 0.85 - m["cacc"]})
    feasible = [t for t in means if t["feasible"]]
    assert summary["best"] == (min(feasible, key=lambda t: t["value"]) if feasible else None)


@pytest.mark.parametrize("value,bound,excess", [(0.1, 0.05, 0.05), (0.04, 0.05, -0.01), (0.8, {"min": 0.85}, 0.05),
                                                (0.9, {"min": 0.85, "max": 0.95}, -0.05), (1.0, {"max": 0.95}, 0.05)])
def test_constraint_bounds(value, bound, excess):
    assert excess_over(value, bound) == pytest.approx(excess)


def test_a_malformed_bound_is_refused():
    with pytest.raises(ValueError, match="a bound is a number"):
        excess_over(0.5, {"at_least": 0.1})
