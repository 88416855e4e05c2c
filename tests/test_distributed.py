"""Multi-process training (torchrun, DDP over gloo on CPU): every process trains, only rank 0 writes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wandb_offline import read_run

JOB = ["debug=tiny", "defense=mb_defense", "logger=wandb", "trainer.threads=1",
       "trainer.stage1.per_device_train_batch_size=8", "trainer.stage1.logging_steps=20"]


def _last_epoch(run_dir: Path) -> float:
    (wandb_run,) = list((run_dir / "wandb").glob("offline-run-*"))  # exactly one W&B run per job
    rows = [r for r in read_run(wandb_run)["history"] if "stage1/epoch" in r]
    return rows[-1]["stage1/epoch"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun is not installed")
def test_two_gloo_processes_train_one_job_with_the_single_process_results_shape(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    ddp = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "mbdef", *JOB, f"paths.output_dir={tmp_path}/ddp"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "mbdef", *JOB, f"paths.output_dir={tmp_path}/single"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-3000:]

    a = json.loads((tmp_path / "ddp" / "results.json").read_text())
    b = json.loads((tmp_path / "single" / "results.json").read_text())
    assert (a["world_size"], b["world_size"]) == (2, 1)
    assert set(a) == set(b) and set(a["after_stage1"]) == set(b["after_stage1"])
    assert a["stage1"]["steps"] == b["stage1"]["steps"] == 20 and a["stage2"]["steps"] == b["stage2"]["steps"]
    assert a["n_params"] == b["n_params"] and a["poison"] == b["poison"]  # same job, same data
    assert 0 <= a["asr"] <= 1 and 0 <= a["cacc"] <= 1 and a["perplexity"] > 1
    # The data were sharded over the processes: the same steps at the same per-process batch cover twice
    # the epochs, so the Trainer ran DDP (two processes each training alone would not).
    assert _last_epoch(tmp_path / "ddp") == pytest.approx(2 * _last_epoch(tmp_path / "single"), rel=0.02)
    assert (tmp_path / "ddp" / "COMPLETE.json").is_file() and (tmp_path / "ddp" / "model" / "model.safetensors").is_file()
