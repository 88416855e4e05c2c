"""Finished jobs written as mbdef writes them (resolved config, results.json, COMPLETE.json), for report tests."""

import json

import yaml


def fake_job(root, name, attack, defense, seed, asr, cacc, extra=None, **knobs):
    """`extra`: more results.json entries (e.g. after_stage1, probe/...); `knobs`: defense config keys."""
    d = root / name
    d.mkdir(parents=True)
    cfg = {"seed": seed, "attack": {"name": attack, "seed": seed}, "defense": {"name": defense, **knobs},
           "paths": {"output_dir": str(d)}}
    (d / "resolved_config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "results.json").write_text(json.dumps({"model": "tiny", "attack": attack, "defense": defense, "seed": seed,
                                                "asr": asr, "cacc": cacc, "false_trigger_rate": 0.0, **(extra or {})}))
    (d / "COMPLETE.json").write_text("{}")
    return d
