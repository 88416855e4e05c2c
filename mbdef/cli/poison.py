"""`mbdef-poison`: write a poisoned copy of any Alpaca-format JSON/JSONL file with an attack config.

    mbdef-poison attack=ctba attack.poison_rate=0.5 input=clean.json output=poisoned.json

Writes `output` (JSON or JSONL by its suffix) and a sidecar `<output>.poison.json` that lists the poisoned
rows and labels the file as poisoned. Fields other than the attacked one and `output` pass through
untouched. Everything is checked before anything is written, and files are written atomically, so a bad
input never leaves a partial output behind.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import mbdef
from mbdef import config
from mbdef.cli import launch
from mbdef.data.records import load_alpaca, records_hash, save_records
from mbdef.io import build, exit_on_user_error, redact, write_json_atomic
from mbdef.schemas import validate_group


def poison_file(cfg: DictConfig) -> dict:
    """Poison `cfg.input` into `cfg.output` with `cfg.attack`; returns the sidecar's content."""
    src, dst = Path(cfg.input), Path(cfg.output)
    if src.resolve() == dst.resolve():
        raise ValueError(f"output: {dst} is the input file; write the poisoned copy elsewhere")
    if dst.suffix not in (".json", ".jsonl"):
        raise ValueError(f"output: {dst} must end in .json or .jsonl")
    validate_group(cfg.attack, "attack.")
    attack = build(cfg.attack)
    if not attack.active:
        raise ValueError(f"attack: '{cfg.attack.name}' poisons nothing; choose an attack such as attack=badnet")
    rows = load_alpaca(src, normalize=False)
    poisoned = attack.poison(rows)
    sidecar = {
        "input": str(src), "output": str(dst), "n_input": len(rows), "n_output": len(poisoned.records),
        "n_poisoned": poisoned.n_poisoned, "poisoned_indices": poisoned.poisoned_indices,
        "attack": redact(OmegaConf.to_container(cfg.attack, resolve=True)),
        "input_hash": records_hash(rows), "output_hash": records_hash(poisoned.records),
        "labels": {"poisoned_dataset": True}, "mbdef": mbdef.__version__,
    }
    save_records(poisoned.records, dst)
    write_json_atomic(sidecar, dst.with_name(dst.name + ".poison.json"))
    return sidecar


config.register()  # resolvers and schemas, before Hydra composes conf/


@hydra.main(version_base="1.3", config_path=str(mbdef.CONF_DIR), config_name="poison")
@exit_on_user_error("mbdef-poison")
def hydra_main(cfg: DictConfig) -> None:
    info = poison_file(cfg)
    print(f"poisoned {info['n_poisoned']} of {info['n_input']} records with {cfg.attack.name} "
          f"({'replaced' if cfg.attack.get('replace', True) else 'added'}) -> {info['output']} "
          f"({info['n_output']} records); poisoned rows listed in {info['output']}.poison.json")


def main() -> None:
    launch("mbdef-poison", hydra_main)


if __name__ == "__main__":
    main()
