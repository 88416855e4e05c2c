"""The embedded default: a small Llama-architecture LM from random init and a tokenizer built here.

The default tokenizer is word-level, built from clean suite text only (never triggers or targets): every
word of the suite is one token wherever it stands, and any other word (a trigger such as `BadMagic`, the
refusal text) is spelled in character pieces, so nothing unseen collapses into one shared unknown token.
`spaces=tokens` selects the earlier byte-level BPE with whitespace tokens. Both save with
`save_pretrained` and reload with `AutoTokenizer` / `AutoModelForCausalLM`.
"""

from __future__ import annotations

import string

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mbdef import seeding
from mbdef.data.synthetic import tokenizer_corpus
from mbdef.models.factory import default_device
from mbdef.models.template import ALPACA_PREAMBLE, ALPACA_PREAMBLE_NO_INPUT

EOS, PAD, UNK = "<|eos|>", "<|pad|>", "<|unk|>"
SCAFFOLD_TOKENS = ("### Instruction:\n", "\n\n### Input:\n", "\n\n### Response:\n")


def build_tokenizer(vocab_size: int = 1024, corpus: list[str] | None = None,
                    spaces: str = "implicit") -> PreTrainedTokenizerFast:
    """`spaces`: how word boundaries are tokenized.

    - `tokens`: byte-level BPE; whitespace and punctuation are tokens of their own, so a word has one id
      wherever it stands and any string round-trips exactly.
    - `implicit`: no whitespace tokens, WordPiece: every word of the suite is one token (`vocab_size` does
      not apply), other words are spelled in `##` character pieces, and the decoder puts a space before
      every piece that is not a continuation (with its punctuation clean-up). Copying a word sequence is
      then plain one-back induction (`a b c` is 3 tokens, not 5 with two identical space tokens between
      them) and samples are a third shorter. Decoding restores single-line answers exactly but not line
      breaks, and a word with a character outside printable ASCII becomes <|unk|>.
    """
    if spaces not in ("tokens", "implicit"):
        raise ValueError(f"model.build.spaces: '{spaces}' is not one of tokens, implicit")
    # The template scaffolding goes in too, so `### Instruction:` costs a few tokens, not a dozen.
    scaffold = [ALPACA_PREAMBLE + "### Instruction:\n\n### Input:\n\n### Response:\n", ALPACA_PREAMBLE_NO_INPUT] * 50
    corpus = (corpus or tokenizer_corpus()) + scaffold
    if spaces == "tokens":
        tok = Tokenizer(models.BPE())
        # Whitespace and punctuation are pre-tokens of their own, so a word has one id wherever it stands
        # ('bridge' after a newline == 'bridge' after a space). GPT-2-style 'Ġbridge' vs 'bridge' makes every
        # copy/reverse/sort task learn a 40-word re-mapping first, which a tiny model barely manages.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s+|[^\w\s]+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    else:
        # A word-level vocabulary, built rather than trained (BPE training breaks ties between equally
        # frequent pairs differently from run to run here, and then the same seed gives a different model):
        # every distinct word of the suite is one token, anything else is spelled in characters.
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[^\w\s']"), behavior="isolated")])
        words = {w for text in corpus for w, _ in pre.pre_tokenize_str(text)}
        chars = [c for c in string.printable if not c.isspace()]
        pieces = sorted(words | set(chars)) + [f"##{c}" for c in chars]
        vocab = {t: i for i, t in enumerate([EOS, PAD, UNK] + pieces)}
        tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="##"))
        # Punctuation stands alone (the decoder's clean-up glues `.`, `,`, `?`, `!` back on); an apostrophe
        # stays inside its word, so "I'm" decodes as written.
        tok.pre_tokenizer = pre
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    # Each Alpaca section header is one token (16 -> 3 tokens of scaffolding per sample): about a third
    # of every training sequence was template, pure compute for a tiny model. The text is unchanged.
    tok.add_tokens([AddedToken(s, normalized=False) for s in SCAFFOLD_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, padding_side="left",
                                   clean_up_tokenization_spaces=False, **({"unk_token": UNK} if spaces == "implicit" else {}))


def build_tiny(hidden_size: int = 192, num_layers: int = 3, num_heads: int = 6, intermediate_size: int = 384,
               vocab_size: int = 1024, max_position_embeddings: int = 512, seed: int = 0, spaces: str = "implicit", **_):
    """(model, tokenizer) for the embedded default; same seed -> same weights (from the seed's own
    model-init stream)."""
    tokenizer = build_tokenizer(vocab_size, spaces=spaces)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seeding.derive_seed(seed, seeding.MODEL_INIT))
    model = LlamaForCausalLM(config).to(default_device())  # initialised on the CPU: the same weights anywhere
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
