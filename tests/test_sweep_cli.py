"""A two-job sweep through the CLI, run once (the `tiny_sweep` fixture) and read by both tests here: what a W&B
dashboard pivots on, and what a re-run of the same command skips. One file, so a parallel test run keeps the
shared sweep in one worker."""

import json
import subprocess

from tests.conftest import sweep_cmd
from tests.wandb_offline import read_run


def test_sweep_wandb_runs_pivot_by_attack_and_defense(tiny_sweep):
    """What a dashboard pivots on: group = the sweep, job_type = the defense, tags, summary, curves, samples."""
    root, _ = tiny_sweep
    seen = {}
    for job in sorted((root / "multirun" / "idem").glob("*/results.json")):
        (run_dir,) = list((job.parent / "wandb").glob("offline-run-*"))
        logged = read_run(run_dir)
        defense = json.loads(job.read_text())["defense"]
        seen[defense] = logged["run"]
        assert logged["run"]["group"] == "idem" and logged["run"]["job_type"] == defense
        assert {"attack:badnet", f"defense:{defense}", "model:tiny", "data:synthetic"} <= set(logged["run"]["tags"])
        assert logged["config"]["defense"]["name"] == defense and logged["config"]["seed"] == 0  # resolved config
        assert {"asr", "cacc"} <= set(logged["summary"])
        keys = {k for row in logged["history"] for k in row}
        assert {"stage1/loss", "final/asr", "final/cacc"} <= keys and ("stage2/loss" in keys) == (defense != "none")
        table = next(row for row in logged["history"] if "final/samples/_type" in row)  # sample generations
        assert table["final/samples/_type"] == "table-file" and table["final/samples/nrows"] >= 2
    assert sorted(seen) == ["finetune", "none"]


def test_rerunning_a_sweep_skips_finished_jobs_and_reruns_failed_ones(tiny_sweep, tmp_path):
    import shutil

    shutil.copytree(tiny_sweep[0], tmp_path, dirs_exist_ok=True)  # re-run a copy: the fixture is shared
    cmd = sweep_cmd(tmp_path, tmp_path / "cache")
    jobs = sorted((tmp_path / "multirun" / "idem").glob("*/results.json"))
    # Named by the overrides (paths excluded), so the same command finds the same dirs again.
    # (long names end in a hash of the full override string)
    names = [p.parent.name for p in jobs]
    assert names[0].startswith("data.n_test=4,debug=tiny,defense=finetune,eval.reactivation.enabled=False")
    assert names[1].startswith("data.n_test=4,debug=tiny,defense=none,eval.reactivation.enabled=False")
    stamps = {p: p.stat().st_mtime_ns for p in jobs}
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and (second.stdout + second.stderr).count("already complete, skipped") == 2, second.stdout[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    failed = jobs[0].parent
    (failed / "COMPLETE.json").unlink()  # as if that job had died before finishing
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and (third.stdout + third.stderr).count("already complete, skipped") == 1, third.stdout[-3000:]
    assert jobs[0].stat().st_mtime_ns != stamps[jobs[0]] and jobs[1].stat().st_mtime_ns == stamps[jobs[1]]
    assert (failed / "COMPLETE.json").is_file()
    summary = json.loads((tmp_path / "multirun" / "idem" / "summary.json").read_text())
    assert sorted(r["defense"] for r in summary) == ["finetune", "none"]
