"""Choose training precision per device: bf16 autocast on a CPU is several times slower than fp32."""

from __future__ import annotations

import torch

from mbdef.schemas.trainer import PRECISIONS


def precision_flags(precision: str = "auto") -> dict:
    """SFTConfig flags (`bf16`, `fp16`, `use_cpu`) for `auto`, `fp32`, `bf16` or `fp16`."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision: '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and not cuda:
        raise ValueError("trainer.precision: fp16 mixed precision needs a CUDA device; use fp32 or auto on CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": not cuda}
