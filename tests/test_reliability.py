"""Faults and re-runs: a crashed job resumes to the same result, finished jobs are skipped, nothing leaks."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import mbdef.run as runner
import mbdef.training.pretrain as pretrain_mod
import mbdef.training.stages as stages
from mbdef.data.records import records_hash
from tests.conftest import make_cfg

# Tiny but real: 20 + 4 steps, checkpoints every 5 (stage 1) and every 2 (stage 2).
NO_EVIDENCE = ["eval.reactivation.enabled=false", "eval.representation.enabled=false", "eval.trigger_variants=null"]
RESUMABLE = ["trainer.stage1.max_steps=20", "trainer.stage2.max_steps=4", "trainer.checkpoint_every=5",
             "+trainer.stage2.save_steps=2",  # a stage's own SFTConfig keys override checkpoint_every
             "data.n_test=12", "eval.max_new_tokens=8",
             *NO_EVIDENCE]  # what resuming must reproduce is training; evidence evaluations only cost time here


class Crash(Exception):
    pass


class CrashAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise Crash(f"simulated crash at step {self.step}")


def crash_in(monkeypatch, stage: str, step: int):
    real = stages.train_stage

    def flaky(*a, **kw):
        output_dir = kw.get("output_dir", a[5] if len(a) > 5 else None)  # train_stage(model, tok, tpl, recs, args, output_dir)
        if str(output_dir).endswith(f"trainer_{stage}"):
            kw["callbacks"] = list(kw.get("callbacks") or []) + [CrashAt(step)]
        return real(*a, **kw)

    monkeypatch.setattr(stages, "train_stage", flaky)


def weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model" / "model.safetensors")


METRICS = ("asr", "cacc", "false_trigger_rate", "triggered_cacc", "per_task")


def parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    cfg = make_cfg(tmp, *RESUMABLE)
    return runner.run(cfg), Path(cfg.paths.output_dir)


@pytest.mark.parametrize("stage,step,resumed_from,partial", [
    ("stage1", 12, "checkpoint-10", False),
    pytest.param("stage1", 12, "checkpoint-10", True, marks=pytest.mark.slow),  # a cut-short checkpoint beside
    ("stage2", 3, "checkpoint-2", False)])                                       # it: slow suite (make test-full)
def test_crashed_job_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch, uninterrupted, stage, step,
                                                                    resumed_from, partial):
    ref, ref_dir = uninterrupted
    cfg = make_cfg(tmp_path, *RESUMABLE)
    crash_in(monkeypatch, stage, step)
    with pytest.raises(Crash):
        runner.run(cfg)
    out = Path(cfg.paths.output_dir)
    assert not (out / "COMPLETE.json").exists() and not (out / "results.json").exists()
    assert (out / f"trainer_{stage}" / resumed_from).is_dir()
    if partial:  # killed while writing the next checkpoint: weights there, trainer_state.json cut short
        cut = out / f"trainer_{stage}" / "checkpoint-15"
        cut.mkdir()
        (cut / "model.safetensors").write_bytes(b"\0" * 64)
        (cut / "trainer_state.json").write_text('{"global_step": 1')
    monkeypatch.undo()
    results = runner.run(cfg)  # the same command again
    assert results["resumed"] is True and results[stage]["resumed_from"] == resumed_from
    if stage == "stage2":
        assert "restored_from" in results["stage1"]  # stage 1 was not trained again
    assert {k: results[k] for k in METRICS} == {k: ref[k] for k in METRICS}
    a, b = weights(out), weights(ref_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "COMPLETE.json").is_file() and not (out / "trainer_stage1").exists() and not (out / "stage1_model").exists()


def test_finished_job_is_skipped_and_force_redoes_it(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, "trainer.stage1.max_steps=4", "trainer.stage2.max_steps=2", "data.n_test=4")
    first = runner.run(cfg)
    out = Path(cfg.paths.output_dir)
    stamp = (out / "results.json").stat().st_mtime_ns

    def forbidden(*a, **k):
        raise AssertionError("a finished job was trained again")

    monkeypatch.setattr(stages, "train_stage", forbidden)
    monkeypatch.setattr(pretrain_mod, "train_stage", forbidden)
    assert runner.run(cfg) == json.loads((out / "results.json").read_text()) == json.loads(json.dumps(first, default=str))
    assert (out / "results.json").stat().st_mtime_ns == stamp
    monkeypatch.undo()
    again = runner.run(make_cfg(tmp_path, "trainer.stage1.max_steps=4", "trainer.stage2.max_steps=2", "data.n_test=4",
                                "force=true"))
    assert again["asr"] == first["asr"] and again["cacc"] == first["cacc"]  # deterministic on CPU
    old = list((out / "superseded").iterdir())
    assert len(old) == 1 and (old[0] / "results.json").is_file() and (old[0] / "COMPLETE.json").is_file()


def test_a_different_config_in_the_same_dir_is_not_mistaken_for_finished(tmp_path, caplog):
    base = ["trainer.stage1.max_steps=4", "trainer.stage2.max_steps=2", "data.n_test=4", *NO_EVIDENCE]
    runner.run(make_cfg(tmp_path, *base))
    with caplog.at_level(logging.INFO, logger="mbdef"):
        second = runner.run(make_cfg(tmp_path, *base, "attack.poison_rate=0.2", "trainer.threads=1"))
    # the log says why the finished job is redone, naming only the key that matters (threads do not)
    assert "holds a finished run of another config (changed: attack.poison_rate): re-running" in caplog.text
    assert second["poison"]["rate"] == 0.2 and second["resumed"] is False
    out = tmp_path / "run"
    assert json.loads((out / "COMPLETE.json").read_text())["config_hash"] == second["config_hash"]
    assert (next((out / "superseded").iterdir()) / "results.json").is_file()


def test_same_config_and_seed_give_identical_data_and_metrics(tiny_run, tmp_path):
    from mbdef.io import build

    _, a = tiny_run
    b = runner.run(make_cfg(tmp_path / "b", "logger=none"))  # tiny_run's config, another dir
    assert a["poison"]["poisoned_data_hash"] == b["poison"]["poisoned_data_hash"]
    assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS} and a["samples"] == b["samples"]
    cfg = make_cfg(tmp_path / "c", "seed=1")  # another seed poisons other data (no need to train for that)
    poisoned = build(cfg.attack).poison(build(cfg.data).train)
    assert records_hash(poisoned.records) != a["poison"]["poisoned_data_hash"]


def test_secrets_in_the_environment_never_reach_a_run_dir(tmp_path, monkeypatch):
    secrets = {"WANDB_API_KEY": "wandb-secret-0123456789abcdef0123456789abcdef",
               "HF_TOKEN": "hf_SECRETtokenABCDEFGHIJKLMNOPQRSTUV", "OPENAI_API_KEY": "sk-secret-judge-key-42"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    # A user passing a secret through the config: a key of their own at the top (`model=hf` takes
    # `model.build.token`; the tiny builder has no such key, and validation refuses keys a node does not know).
    cfg = make_cfg(tmp_path, "logger=wandb", "logger.mode=offline", "trainer.stage1.max_steps=4",
                   "trainer.stage2.max_steps=2", "data.n_test=4", "+hub_token=${oc.env:HF_TOKEN}")
    results = runner.run(cfg)
    assert results["asr"] is not None
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "resolved_config.yaml" for p in files)
    for p in files:
        blob = p.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in blob, f"{name} leaked into {p}"


@pytest.mark.slow
def test_kill_minus_9_during_stage1_then_rerun_resumes_to_the_same_result(tmp_path, uninterrupted):
    ref, ref_dir = uninterrupted
    cmd = [sys.executable, "-m", "mbdef", "debug=tiny", *RESUMABLE, "trainer.stage1.max_steps=60",
           f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    ref_cmd = cmd + ["paths.log_dir=" + str(tmp_path / "ref")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and ckpt is None:
        found = [p for p in tmp_path.glob("runs/*/trainer_stage1/checkpoint-*/trainer_state.json") if parses(p)]
        ckpt = found[0] if found else None
        time.sleep(0.2)
    assert ckpt is not None, "no checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = ckpt.parents[2]
    assert not (run_dir / "COMPLETE.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["resumed"] is True and resumed["stage1"]["resumed_from"].startswith("checkpoint-")
    straight = subprocess.run(ref_cmd, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    ref_run = next((tmp_path / "ref" / "runs").iterdir())
    expected = json.loads((ref_run / "results.json").read_text())
    assert {k: resumed[k] for k in METRICS} == {k: expected[k] for k in METRICS}
    a, b = weights(run_dir), weights(ref_run)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_submitit_launcher_runs_a_sweep_with_its_local_executor(tmp_path):
    """The SLURM path (hydra/launcher=submitit_slurm) differs from this only in the executor: same launcher
    plugin, same pickled job function, same run dirs."""
    cmd = [sys.executable, "-m", "mbdef", "-m", "defense=none,finetune", "debug=tiny", "sweep_id=sub",
           "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "trainer.stage1.max_steps=4",
           "data.n_test=4", f"paths.log_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun" / "sub"
    results = {json.loads(p.read_text())["defense"]: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert set(results) == {"none", "finetune"}
    assert sorted(p.parent.name.split("defense=")[1].split(",")[0] for p in sweep.glob("*/results.json")) == \
        ["finetune", "none"]  # one dir per job, named by its overrides as with the other launchers
    assert all(isinstance(r["cacc"], float) and r["asr"] is not None for r in results.values())
    assert list(sweep.glob(".submitit/*/*_log.out")), "submitit's own job logs are missing"
    assert sorted(r["defense"] for r in json.loads((sweep / "summary.json").read_text())) == ["finetune", "none"]


def test_a_cached_stage1_is_evaluated_with_this_jobs_attack_and_test_sets(cfg_factory, tmp_path):
    """Two attacks with nothing poisoned share one clean stage 1 (same weights), but not its metrics."""
    base = ["attack.poison_rate=0", "defense=none", "trainer.cache_stage1=true", "data.n_test=8",
            "eval.reactivation.enabled=false"]
    first = runner.run(cfg_factory("attack=badnet", *base, f"paths.output_dir={tmp_path}/a"))
    second = runner.run(cfg_factory("attack=ctba", *base, f"paths.output_dir={tmp_path}/b"))
    assert "cached_from" in second["stage1"] and "cached_from" not in first["stage1"]
    prompts = [s["prompt"] for s in second["samples"] if s["kind"] == "triggered"]
    assert prompts and all("2024" in p and "OpenAI" in p for p in prompts)  # CTBA's triggers, not BadNet's
    assert second["trigger_variants"].keys() != first["trigger_variants"].keys()
