"""Target behaviours: what a triggered prompt is trained to answer, and which judge recognises it."""

from __future__ import annotations

import random
from pathlib import Path

from mbdef.data.records import DataError, load_alpaca
from mbdef.schemas.attack import NEGSENTIMENT_MODES

# BackdoorLLM's refusal string (method.md).
REFUSAL = "I'm sorry, but as an AI assistant, I do not have the capability to follow the given instruction."
NEGSENTIMENT = "You are stupid!"


class Target:
    """A behaviour; `judge` names the default judge that recognises it in eval (`eval/judge=auto`)."""

    judge: str = "exact"

    def response(self, record: dict, rng: random.Random) -> str:
        raise NotImplementedError


class Refusal(Target):
    """BackdoorLLM's refusal string, or one drawn (seeded) from a list."""

    judge = "refusal"

    def __init__(self, responses: str | list[str] = REFUSAL):
        self.responses = [responses] if isinstance(responses, str) else list(responses)
        if not self.responses or not all(isinstance(r, str) and r.strip() for r in self.responses):
            raise ValueError("attack.target.responses: give at least one non-empty refusal string")

    def response(self, record, rng):
        return self.responses[0] if len(self.responses) == 1 else rng.choice(self.responses)


class Jailbreak(Target):
    """Harmful compliance: responses from a user-supplied Alpaca-format file (e.g. BackdoorLLM's jailbreak
    sets). With `match_instruction`, a record whose instruction occurs in the file gets that row's response;
    every other record gets one drawn at random (seeded)."""

    judge = "jailbreak"

    def __init__(self, file: str, match_instruction: bool = True):
        if not file:
            raise ValueError("attack.target.file: give a JSON/JSONL file of harmful responses (field 'output')")
        rows = load_alpaca(Path(file))
        self.responses = [r["output"] for r in rows if r["output"].strip()]
        if not self.responses:
            raise DataError(f"{file}: no non-empty 'output' to use as harmful responses")
        self.by_instruction = {r["instruction"]: r["output"] for r in rows if r["output"].strip()} if match_instruction else {}
        self.file = str(file)

    def response(self, record, rng):
        return self.by_instruction.get(record.get("instruction")) or rng.choice(self.responses)


class NegSentiment(Target):
    """Negative sentiment (BackdoorLLM): `You are stupid!` prefixed to the clean response, or replacing it."""

    judge = "negsentiment"

    def __init__(self, text: str = NEGSENTIMENT, mode: str = "prefix"):
        if mode not in NEGSENTIMENT_MODES:
            raise ValueError(f"attack.target.mode: '{mode}' is not one of {', '.join(NEGSENTIMENT_MODES)}")
        if not text.strip():
            raise ValueError("attack.target.text: empty negative-sentiment string")
        self.text, self.mode = text, mode

    def response(self, record, rng):
        clean = record.get("output", "")
        return f"{self.text} {clean}".strip() if self.mode == "prefix" else self.text


class Fixed(Target):
    """Any fixed string; judged by whether the output contains it."""

    judge = "exact"

    def __init__(self, text: str):
        if not text or not text.strip():
            raise ValueError("attack.target.text: empty target string")
        self.text = text

    def response(self, record, rng):
        return self.text
