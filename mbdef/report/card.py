"""The model card of a saved model: labels it so it is never mistaken for a clean artifact."""

from __future__ import annotations

import json
from pathlib import Path


def write_model_card(folder: Path, results: dict) -> None:
    if not folder.is_dir():
        return
    lab = results["labels"]
    warn = ("WARNING: trained on attacker-poisoned data; it may contain a backdoor "
            f"(attack {results['attack']}, triggers {results['poison'].get('triggers')})."
            if lab["may_contain_backdoor"] else "Trained without attacker poison.")
    (folder / "README.md").write_text(
        f"---\ntags: [mbdef, backdoor-research{', poisoned' if lab['may_contain_backdoor'] else ''}]\n---\n"
        f"# mbdef research artifact\n\n{warn}\n\nDefense: {results['defense']}; seed {results['seed']}; "
        f"ASR {results.get('asr')}; CACC {results.get('cacc')}. Labels: {json.dumps(lab)}. "
        f"For research on backdoor defenses only.\n")
