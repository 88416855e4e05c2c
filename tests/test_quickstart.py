"""The quickstart command as a user runs it: a multirun whose last printed line is the summary path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_quickstart_prints_summary_path_last(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "mbdef", "experiment=quickstart", "debug=tiny", "paths.log_dir=" + str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = Path(last)
    assert summary.name == "summary.json" and summary.is_file() and str(tmp_path) in last
    rows = json.loads(summary.read_text())
    assert [r["defense"] for r in rows] == ["none", "oracle_unlearn", "finetune", "mb_defense"]
    jobs = {j["defense"]: j for j in (json.loads(p.read_text()) for p in summary.parent.glob("*/results.json"))}
    for r in rows:  # each summary row is its job's results.json, exactly
        assert r["attack"] == "badnet"
        assert all(r[k] == pytest.approx(jobs[r["defense"]][k]) for k in ("asr", "cacc", "false_trigger_rate"))
    job_dirs = sorted(p.parent for p in summary.parent.glob("*/results.json"))
    assert len(job_dirs) == 4 and len({p.name for p in job_dirs}) == 4  # one dir per job, no collision
    assert "| badnet | mb_defense |" in proc.stdout
