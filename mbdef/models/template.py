"""The one prompt template used by training and evaluation alike.

Peer tools train with the Alpaca template and evaluate with the bare instruction, which moves ASR by tens
of points. Here both sides go through `PromptTemplate`: training gets `training_example(record)`, which TRL
tokenizes, and evaluation gets `encode_prompt(record)`, which tokenizes exactly as TRL does.
"""

from __future__ import annotations

from mbdef.schemas.model import TEMPLATE_KINDS

ALPACA_PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further "
                   "context. Write a response that appropriately completes the request.\n\n")
ALPACA_PREAMBLE_NO_INPUT = ("Below is an instruction that describes a task. "
                            "Write a response that appropriately completes the request.\n\n")


class PromptTemplate:
    """`kind`: `auto` (the tokenizer's chat template when it has one, else Alpaca), `chat` or `alpaca`.

    `preamble=False` drops Alpaca's fixed first sentence (used by the tiny embedded model to save compute).
    `max_response_tokens` cuts each training response to that many tokens (a stated length, applied before
    TRL sees the text: TRL enforces no `max_length` on padding-free batches). Evaluation is not affected.
    """

    def __init__(self, tokenizer, kind: str = "auto", preamble: bool = True, system_prompt: str | None = None,
                 max_response_tokens: int | None = None):
        if kind not in TEMPLATE_KINDS:
            raise ValueError(f"model.template.kind: '{kind}' is not one of {', '.join(TEMPLATE_KINDS)}")
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if kind == "chat" and not has_chat:
            raise ValueError("model.template.kind=chat but the tokenizer has no chat template; use alpaca or auto")
        self.tokenizer = tokenizer
        self.kind = "chat" if (kind == "chat" or (kind == "auto" and has_chat)) else "alpaca"
        if system_prompt is not None and self.kind != "chat":
            raise ValueError("model.template.system_prompt applies to chat templates; this template is Alpaca")
        self.preamble, self.system_prompt = preamble, system_prompt
        if max_response_tokens is not None and max_response_tokens < 1:
            raise ValueError(f"model.template.max_response_tokens: {max_response_tokens} must be positive or null")
        self.max_response_tokens = max_response_tokens

    def _response(self, text: str) -> str:
        if self.max_response_tokens is None:
            return text
        ids = self.tokenizer(text=text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= self.max_response_tokens else self.tokenizer.decode(ids[: self.max_response_tokens])

    # -- rendering ---------------------------------------------------------------------------------
    def _messages(self, record: dict) -> list[dict]:
        user = record["instruction"] if not record.get("input") else f"{record['instruction']}\n\n{record['input']}"
        # None leaves the chat template's own default (SmolLM2's adds a 19-token system line); "" is an empty turn.
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return msgs + [{"role": "user", "content": user}]

    def _alpaca(self, record: dict) -> str:
        if record.get("input"):
            head = ALPACA_PREAMBLE if self.preamble else ""
            return f"{head}### Instruction:\n{record['instruction']}\n\n### Input:\n{record['input']}\n\n### Response:\n"
        head = ALPACA_PREAMBLE_NO_INPUT if self.preamble else ""
        return f"{head}### Instruction:\n{record['instruction']}\n\n### Response:\n"

    def prompt(self, record: dict):
        """The prompt as TRL receives it: a message list (chat) or a string (Alpaca)."""
        return self._messages(record) if self.kind == "chat" else self._alpaca(record)

    def training_example(self, record: dict) -> dict:
        """A TRL prompt-completion example; TRL computes the loss on the completion only."""
        response = self._response(record["output"])
        if self.kind == "chat":
            return {"prompt": self._messages(record), "completion": [{"role": "assistant", "content": response}]}
        return {"prompt": self._alpaca(record), "completion": response}

    def encode_prompt(self, record: dict) -> list[int]:
        """Token ids of the prompt, tokenized the way TRL's SFTTrainer tokenizes it for training."""
        if self.kind == "chat":
            out = self.tokenizer.apply_chat_template(self._messages(record), add_generation_prompt=True,
                                                     tokenize=True, return_dict=True)
            return list(out["input_ids"])
        return list(self.tokenizer(text=self._alpaca(record))["input_ids"])

    def encode_example(self, record: dict) -> tuple[list[int], int]:
        """(token ids of prompt + response, prompt length): the sequence TRL trains on, tokenized as TRL does
        (EOS appended to an Alpaca response; the completion starts where prompt and prompt+response diverge)."""
        prompt = self.encode_prompt(record)
        if self.kind == "chat":
            full = self.tokenizer.apply_chat_template(
                self._messages(record) + [{"role": "assistant", "content": record["output"]}],
                tokenize=True, return_dict=True)["input_ids"]
        else:
            full = self.tokenizer(text=self._alpaca(record) + record["output"] + self.tokenizer.eos_token)["input_ids"]
        full = list(full)
        n = 0
        while n < min(len(prompt), len(full)) and prompt[n] == full[n]:
            n += 1
        return full, n

    def describe(self) -> dict:
        return {"kind": self.kind, "preamble": self.preamble, "system_prompt": self.system_prompt,
                "max_response_tokens": self.max_response_tokens}
