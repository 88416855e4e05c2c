"""Target behaviours: what a triggered prompt is trained to answer."""

from __future__ import annotations

import random

# BackdoorLLM's refusal string (method.md).
REFUSAL = "I'm sorry, but as an AI assistant, I do not have the capability to follow the given instruction."


class Target:
    """A behaviour; `judge` names the default judge that recognises it in eval."""

    judge: str = "exact"

    def response(self, record: dict, rng: random.Random) -> str:
        raise NotImplementedError


class Refusal(Target):
    judge = "refusal"

    def __init__(self, responses: str | list[str] = REFUSAL):
        self.responses = [responses] if isinstance(responses, str) else list(responses)
        if not self.responses:
            raise ValueError("attack.target.responses: give at least one refusal string")

    def response(self, record, rng):
        return self.responses[0] if len(self.responses) == 1 else rng.choice(self.responses)


class Fixed(Target):
    judge = "exact"

    def __init__(self, text: str):
        if not text:
            raise ValueError("attack.target.text: empty target string")
        self.text = text

    def response(self, record, rng):
        return self.text
