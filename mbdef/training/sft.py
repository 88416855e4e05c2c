"""One training stage on TRL's SFTTrainer: prompt-completion data, loss on the response tokens only."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback
from trl import SFTConfig

from mbdef.models.template import PromptTemplate
from mbdef.training.head import ResponseHeadSFTTrainer
from mbdef.training.callbacks import ProgressLines
from mbdef.training.precision import precision_flags

log = logging.getLogger("mbdef")

# Settings that keep the trainer's own overhead small (see benchmarks/trainer_overhead.py).
FAST_DEFAULTS = dict(
    report_to="none",            # W&B is driven by mbdef's own tracker: one run, namespaced stages
    activation_checkpointing=False,  # TRL defaults to recomputing activations; set it per stage for big models
    save_strategy="no",
    dataloader_num_workers=0,    # worker processes cost more than they save on tiny batches
    dataloader_pin_memory=False,
    disable_tqdm=False,
    logging_first_step=True,
    completion_only_loss=True,
    dataset_num_proc=None,
    remove_unused_columns=True,
)


def configure_progress(mode: str, label: str) -> str | None:
    """`bars` (tqdm, one job at a time) or `lines` (labelled log lines, for jobs side by side) for the libraries'
    own bars (datasets' map, transformers' shard writing); returns the label a stage's lines carry (None: bars)."""
    import datasets
    import transformers

    if mode not in ("bars", "lines"):
        raise ValueError(f"progress: '{mode}' is not one of bars, lines (auto is decided by the mbdef command)")
    if mode == "lines":
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        return label
    datasets.enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()
    return None


def sft_config(stage_args: dict, output_dir: str | Path, precision: str, seed: int, max_length: int | None,
               padding_free: bool = False) -> SFTConfig:
    numeric = ("max_steps", "learning_rate", "num_train_epochs", "per_device_train_batch_size", "warmup_steps",
               "logging_steps", "gradient_accumulation_steps", "save_steps")
    for key in numeric:
        v = stage_args.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"trainer stage config: {key} must be a number, got {v!r} ({type(v).__name__})")
    steps = stage_args.get("max_steps", -1)
    if steps is not None and steps != -1 and steps < 1:
        raise ValueError(f"trainer stage config: max_steps must be a positive count (or -1 for epochs), got {steps}")
    if steps == -1 and "max_steps" in stage_args and stage_args.get("num_train_epochs") is None:
        # otherwise SFTConfig's default of 3 epochs would decide silently
        raise ValueError("trainer stage config: max_steps -1 trains by epochs, so it needs num_train_epochs")
    for key in ("learning_rate", "num_train_epochs", "per_device_train_batch_size"):
        if key in stage_args and stage_args[key] is not None and stage_args[key] <= 0:
            raise ValueError(f"trainer stage config: {key} must be positive, got {stage_args[key]}")
    args = {**FAST_DEFAULTS, **precision_flags(precision), "seed": seed, "data_seed": seed,
            "max_length": None if padding_free else max_length, "padding_free": padding_free,
            **dict(stage_args), "output_dir": str(output_dir)}
    try:
        return SFTConfig(**args)
    except TypeError as e:
        raise ValueError(f"trainer stage config: {e} (keys must be trl.SFTConfig fields)") from e


def to_dataset(records: list[dict], template: PromptTemplate) -> Dataset:
    return Dataset.from_list([template.training_example(r) for r in records])


def lora_config(lora: dict):
    """peft.LoraConfig from `trainer.lora` (r, alpha, dropout, target_modules)."""
    from peft import LoraConfig

    known = {"r", "alpha", "dropout", "target_modules", "bias"}
    if unknown := sorted(set(lora) - known):
        raise ValueError(f"trainer.lora: unknown key(s) {unknown}; known: {sorted(known)}")
    if int(lora.get("r", 8)) < 1:
        raise ValueError(f"trainer.lora.r: must be a positive rank, got {lora.get('r')}")
    return LoraConfig(r=int(lora.get("r", 8)), lora_alpha=float(lora.get("alpha", 16)),
                      lora_dropout=float(lora.get("dropout", 0.05)), bias=lora.get("bias", "none"),
                      target_modules=list(lora["target_modules"]) if lora.get("target_modules") else "all-linear",
                      task_type="CAUSAL_LM")


def train_stage(model, tokenizer, template: PromptTemplate, records: list[dict], stage_args: dict,
                output_dir: str | Path, precision: str = "auto", seed: int = 0, max_length: int | None = 256,
                padding_free: bool = False, callbacks: list | None = None, checkpoint_every: int | None = None,
                lora: dict | None = None, adapter_dir: str | Path | None = None, progress_label: str | None = None,
                extra_loss=None) -> dict:
    """Train `model` in place on `records`; returns the trainer's log history and timing. `progress_label`:
    one labelled log line per trainer log instead of a progress bar (jobs side by side). `extra_loss`:
    (model, batch) -> (term, {name: value}), added to the loss of every training batch and logged (CROW).

    With `checkpoint_every`, the trainer keeps its last checkpoint (weights, optimizer, scheduler, RNG
    states, data position) in `output_dir` and a call that finds one there resumes from it, so a killed
    stage continues where it stopped and ends with the same weights as an uninterrupted one. The
    checkpoints are removed when the stage completes.
    """
    if not records:
        raise ValueError("training stage got an empty dataset")
    extra = {"save_strategy": "steps", "save_steps": int(checkpoint_every), "save_total_limit": 1} if checkpoint_every else {}
    lines = progress_label is not None
    if lines:
        extra["disable_tqdm"] = True
    args = sft_config({**extra, **stage_args}, output_dir, precision, seed, max_length, padding_free)
    stage = Path(output_dir).name.removeprefix("trainer_")
    trainer = ResponseHeadSFTTrainer(model=model, args=args, train_dataset=to_dataset(records, template),
                                     processing_class=tokenizer,
                                     callbacks=(callbacks or []) + ([ProgressLines(progress_label, stage)] if lines else []),
                                     peft_config=lora_config(lora) if lora else None, extra_loss=extra_loss)
    if lines:
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts when bars are off
    resume = last_complete_checkpoint(output_dir) if checkpoint_every else None
    start = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    if lora:
        if adapter_dir:
            trainer.model.save_pretrained(adapter_dir, safe_serialization=True)
        merged = trainer.model.merge_and_unload()
        if merged is not model:  # peft edits the model in place; anything else would silently lose the stage
            raise RuntimeError("peft merge_and_unload returned a different model object")
    if checkpoint_every:
        shutil.rmtree(output_dir, ignore_errors=True)
    # each logged term of extra_loss at the first and the last log: did training lower it?
    logged = {name: [row[name] for row in trainer.state.log_history if name in row] for name in sorted(trainer.extra_names)}
    return {"steps": trainer.state.global_step, "train_loss": out.training_loss, "seconds": round(seconds, 2),
            "log_history": trainer.state.log_history, "n_examples": len(records),
            **({"extra_loss": {k: {"first": v[0], "last": v[-1]} for k, v in logged.items() if v}} if logged else {}),
            **({"resumed_from": Path(resume).name} if resume else {})}


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint that was written to the end, or None.

    The Trainer writes trainer_state.json last and only then deletes the previous checkpoint, so a run
    killed while saving leaves a newer, partial checkpoint beside a complete one. transformers'
    get_last_checkpoint would pick the partial one by its step number and fail to load it."""
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d))
    for _, d in sorted(found, reverse=True):
        try:
            json.loads((d / "trainer_state.json").read_text())
            return str(d)
        except (OSError, ValueError):
            log.warning("skipping checkpoint %s: it was not written to the end (run killed while saving)", d)
    return None
