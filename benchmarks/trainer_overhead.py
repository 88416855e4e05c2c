"""Trainer overhead: time per SFT step through TRL's SFTTrainer vs a plain PyTorch loop.

Same model, same tokenized batches (taken from the trainer's own dataloader), same optimizer (AdamW),
same learning-rate schedule and gradient clipping. Both are measured in this one process, after warm-up,
and the ratio is printed.

    python benchmarks/trainer_overhead.py [--steps 60] [--batch 16] [--naive]

`--naive` also times SFTTrainer with TRL's defaults (bf16 autocast on, tqdm, per-step metrics) to show
what the configuration in mbdef/training/sft.py saves.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import TrainerCallback

from mbdef.attacks import BadNet, Refusal
from mbdef.data import synthetic_splits
from mbdef.models import PromptTemplate, build_tiny
from mbdef.training.sft import sft_config, to_dataset

from trl import SFTConfig, SFTTrainer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def trainer_steps(model, tok, ds, args) -> tuple[list[float], float]:
    timer = StepTimer()
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer])
    t = time.perf_counter()
    trainer.train()
    return timer.times, time.perf_counter() - t


def plain_loop(model, batches, lr, max_grad_norm) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model.train()
    times = []
    for batch in batches:
        t = time.perf_counter()
        out = model(**batch, use_cache=False)  # as TRL does; a KV cache would disable packed-sequence masks
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--naive", action="store_true")
    a = ap.parse_args()
    base, tok = build_tiny()
    template = PromptTemplate(tok, preamble=False)
    # The quickstart's stage-1 data: the suite with 10 % BadNet poison (long refusal targets included).
    records = BadNet(Refusal(), poison_rate=0.1).poison(synthetic_splits(n_train=a.batch * (a.steps + 5)).train).records
    ds = to_dataset(records, template)
    stage = dict(max_steps=a.steps, per_device_train_batch_size=a.batch, learning_rate=1e-3,
                 lr_scheduler_type="constant", warmup_steps=0, logging_steps=10)

    # As mbdef trains by default: padding-free batches (see conf/trainer/default.yaml).
    args = sft_config(stage, "/tmp/mbdef-bench", "auto", 0, 256, padding_free=True)
    t_mb, wall_mb = trainer_steps(copy.deepcopy(base), tok, ds, args)

    # The plain loop gets the exact batches the trainer's collator builds.
    probe = SFTTrainer(model=copy.deepcopy(base), args=args, train_dataset=ds, processing_class=tok)
    batches = [b for _, b in zip(range(a.steps), probe.get_train_dataloader())]
    batches = [{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
               for b in batches]
    t_plain = plain_loop(copy.deepcopy(base), batches, 1e-3, args.max_grad_norm)

    rows = [("plain PyTorch loop", t_plain), ("SFTTrainer, mbdef config", t_mb)]
    if a.naive:
        naive = SFTConfig(output_dir="/tmp/mbdef-bench-naive", report_to="none", save_strategy="no",
                          use_cpu=not torch.cuda.is_available(), **stage)  # TRL defaults: bf16=True
        t_naive, _ = trainer_steps(copy.deepcopy(base), tok, ds, naive)
        rows.append(("SFTTrainer, TRL defaults", t_naive))

    med_plain = statistics.median(t_plain[a.warmup:])
    print(f"\nmodel {sum(p.numel() for p in base.parameters()) / 1e6:.2f} M params, batch {a.batch}, "
          f"{a.steps} steps ({a.warmup} warm-up excluded), torch threads {torch.get_num_threads()}")
    print(f"{'':28s} {'median ms/step':>15s} {'ratio to plain':>15s}")
    for name, ts in rows:
        med = statistics.median(ts[a.warmup:])
        print(f"{name:28s} {med * 1e3:15.1f} {med / med_plain:15.2f}x")
    print(f"SFTTrainer whole train() wall time incl. set-up: {wall_mb:.1f} s")


if __name__ == "__main__":
    main()
