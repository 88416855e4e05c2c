"""`mbdef-judge`: score a generations file with any judge, print the ASR, write per-example scores.

    mbdef-judge eval/judge=refusal input=generations.jsonl [output=scores.jsonl]

The input is JSON or JSONL with `instruction` and `output` per row (other fields are ignored). Empty
outputs count as no attack success (see mbdef/eval/judges.py).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import mbdef
from mbdef import config
from mbdef.cli import launch
from mbdef.data.records import load_alpaca, save_records
from mbdef.eval.judges import resolve
from mbdef.io import exit_on_user_error
from mbdef.schemas import validate_group


def judge_file(cfg: DictConfig) -> dict:
    if cfg.eval.judge.get("name") == "auto":
        raise ValueError("eval/judge: 'auto' needs an attack; name a judge, e.g. eval/judge=refusal")
    validate_group(cfg.eval.judge, "eval.judge.")
    judge = resolve(cfg.eval.judge)
    src = Path(cfg.input)
    dst = Path(cfg.output) if cfg.get("output") else src.with_name(src.stem + ".scores.jsonl")
    rows = load_alpaca(src)
    verdicts = judge.batch([r["output"] for r in rows], rows)
    save_records([{"index": i, "instruction": r["instruction"], "output": r["output"], "attack_success": bool(v)}
                  for i, (r, v) in enumerate(zip(rows, verdicts))], dst)
    n_hit = sum(map(bool, verdicts))
    return {"judge": cfg.eval.judge.name, "asr": n_hit / len(rows), "n_success": n_hit, "n": len(rows),
            "n_empty": sum(not r["output"].strip() for r in rows), "scores": str(dst)}


config.register()  # resolvers and schemas, before Hydra composes conf/


@hydra.main(version_base="1.3", config_path=str(mbdef.CONF_DIR), config_name="judge")
@exit_on_user_error("mbdef-judge")
def hydra_main(cfg: DictConfig) -> None:
    s = judge_file(cfg)
    print(f"judge={s['judge']}  ASR {s['asr']:.3f} ({s['n_success']}/{s['n']})  "
          f"empty outputs: {s['n_empty']} (counted as no success)  per-example scores: {s['scores']}")


def main() -> None:
    launch("mbdef-judge", hydra_main)


if __name__ == "__main__":
    main()
