"""Evaluation generation: mbdef's batched generate vs BackdoorLLM's per-example loop, same model and prompts.

    python benchmarks/eval_generation.py [--model DIR] [--n 128] [--max-new-tokens 32] [--batch-size 128]

BackdoorLLM's evaluation (backdoor_evaluate.py) tokenizes and generates one prompt at a time; mbdef
left-pads a batch and generates it at once with the KV cache. Prints both wall times, the ratio, and how
many greedy outputs are identical (they must all be). Without --model it uses the embedded tiny model
(random init: every output runs to max_new_tokens, the worst case for both).
"""

from __future__ import annotations

import argparse
import time

import torch

from mbdef.data.synthetic import synthetic_splits
from mbdef.eval.generate import generate
from mbdef.models import PromptTemplate, build_tiny, load_pretrained


@torch.no_grad()
def per_example(model, tokenizer, template, records, max_new_tokens):
    """BackdoorLLM's loop: one prompt, one generate call, decode the new tokens."""
    outs = []
    for r in records:
        ids = torch.tensor([template.encode_prompt(r)])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        outs.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a saved HF model dir (default: the embedded tiny model)")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--preamble", action="store_true", help="Alpaca preamble (as model=hf trains by default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model, tok = load_pretrained(a.model) if a.model else build_tiny()
    model.eval()
    template = PromptTemplate(tok, preamble=a.preamble)
    records = synthetic_splits(n_train=10, n_defense_pool=10, n_test=a.n, seed=0).test
    generate(model, tok, template, records[:8], 8, a.max_new_tokens)  # warm-up
    t = time.perf_counter()
    batched = generate(model, tok, template, records, a.batch_size, a.max_new_tokens)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    loop = per_example(model, tok, template, records, a.max_new_tokens)
    t_loop = time.perf_counter() - t
    same = sum(x.strip() == y.strip() for x, y in zip(batched, loop))
    print(f"prompts {a.n}, max_new_tokens {a.max_new_tokens}, threads {torch.get_num_threads()}, "
          f"model {a.model or 'embedded tiny'}")
    print(f"per-example loop (BackdoorLLM): {t_loop:8.2f} s")
    print(f"batched (mbdef, batch {a.batch_size}): {t_batched:8.2f} s")
    print(f"speed-up: {t_loop / t_batched:.1f}x   identical greedy outputs: {same}/{len(records)}")


if __name__ == "__main__":
    main()
