"""SFT throughput and MFU of a ~1B-parameter Llama from random init, through mbdef's trainer settings.

    python benchmarks/sft_throughput.py                      # GPU: the 1B config, bf16, sequence 1024
    python benchmarks/sft_throughput.py --preset tiny         # any machine: a smoke run of the same path

Trains with TRL's SFTTrainer built from mbdef's `sft_config` (precision chosen per device: bf16 on a
GPU), on pre-tokenized random documents packed into full sequences ("wrapped" packing: every sequence
is exactly --seq-len tokens, so tokens/step is known and no compute goes to padding). Prints tokens/s
over the timed steps (after --warmup steps), model FLOPs per token (6 N + 12 L d T, PaLM's formula
with attention) and MFU against the device's bf16 dense peak (H100 SXM 989 TFLOP/s unless --peak-tflops).
Then times batched greedy generation with the KV cache (left-padded prompts, as mbdef's eval does) and
prints generated tokens/s.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import SFTTrainer

from mbdef.models.tiny import build_tokenizer
from mbdef.training import sft_config

PRESETS = {  # hidden, layers, heads, intermediate, vocab
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, intermediate_size=8192, vocab_size=32000),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, vocab_size=1024),
}
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


class StepTimer(TrainerCallback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="1b")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (per device)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--precision", default="auto", help="auto = bf16 on a GPU, fp32 on CPU")
    p.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2 (when installed)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (Trainer's torch_compile)")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--gen-batch", type=int, default=64)
    p.add_argument("--gen-prompt-len", type=int, default=128)
    p.add_argument("--gen-new-tokens", type=int, default=128)
    a = p.parse_args()
    if a.steps <= a.warmup:
        raise SystemExit("--steps must exceed --warmup")
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"

    cfg = LlamaConfig(**PRESETS[a.preset], num_key_value_heads=PRESETS[a.preset]["num_attention_heads"],
                      max_position_embeddings=max(a.seq_len, a.gen_prompt_len + a.gen_new_tokens),
                      tie_word_embeddings=False, attn_implementation=a.attn)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    n_params = sum(q.numel() for q in model.parameters())
    flops_per_token = 6 * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * a.seq_len

    rng = random.Random(0)
    n_tokens = (a.steps + 1) * a.batch_size * a.seq_len
    docs, total = [], 0
    while total < n_tokens:  # random documents of 256-2048 tokens, packed into full sequences by TRL
        n = rng.randint(256, 2048)
        docs.append({"input_ids": [rng.randrange(3, cfg.vocab_size) for _ in range(n)]})
        total += n
    with tempfile.TemporaryDirectory() as out:
        args = sft_config({"max_steps": a.steps, "per_device_train_batch_size": a.batch_size, "learning_rate": 1e-4,
                           "logging_steps": a.steps, "packing": True, "packing_strategy": "wrapped",
                           "torch_compile": a.compile, "disable_tqdm": True},
                          out, a.precision, seed=0, max_length=a.seq_len)
        timer = StepTimer(a.warmup)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(docs), callbacks=[timer],
                             processing_class=build_tokenizer())  # pad/EOS ids only: the data are token ids
        trainer.train()
    timed = a.steps - a.warmup
    tokens_per_s = timed * a.batch_size * a.seq_len / (timer.t1 - timer.t0)
    peak = a.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
    print(f"device {device}; preset {a.preset}: {n_params / 1e9:.3f} B parameters; precision "
          f"{'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'}; attention {a.attn}; sequence {a.seq_len}; "
          f"batch {a.batch_size}; {timed} timed steps after {a.warmup}")
    print(f"SFT: {tokens_per_s:,.0f} tokens/s; {flops_per_token * tokens_per_s / 1e12:.1f} TFLOP/s model FLOPs"
          + (f"; MFU {100 * flops_per_token * tokens_per_s / (peak * 1e12):.1f} % of {peak} TFLOP/s bf16 peak"
             if peak else "; MFU: unknown peak (pass --peak-tflops)"))

    model.eval()
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model.to(dtype)
    dev = next(model.parameters()).device
    prompts = torch.randint(3, cfg.vocab_size, (a.gen_batch, a.gen_prompt_len), device=dev)
    mask = torch.ones_like(prompts)
    with torch.no_grad():
        model.generate(input_ids=prompts[:2], attention_mask=mask[:2], max_new_tokens=4, do_sample=False)  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = model.generate(input_ids=prompts, attention_mask=mask, do_sample=False, use_cache=True,
                             max_new_tokens=a.gen_new_tokens, min_new_tokens=a.gen_new_tokens, pad_token_id=0)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    new = (out.shape[1] - a.gen_prompt_len) * a.gen_batch
    print(f"generation (batch {a.gen_batch}, prompt {a.gen_prompt_len}, {a.gen_new_tokens} new tokens, KV cache): "
          f"{new / seconds:,.0f} new tokens/s ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
