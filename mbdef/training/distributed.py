"""Several processes (torchrun / accelerate launch, DDP): every process trains and evaluates the same way,
only the main one writes files and logs. One process: every call here is a no-op.

The Trainer wraps the model in DDP by itself when the launcher set WORLD_SIZE; this module only adds
what mbdef's own side effects need: who writes, and barriers around the files the others then read.
"""

from __future__ import annotations

import contextlib
import logging
import os


class Processes:
    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self._state = None
        for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
            if os.environ.get(var, "").lower() in ("1", "true"):
                raise ValueError(f"{name} (from the accelerate config, {var}) is not supported yet: mbdef "
                                 f"evaluates and saves the whole model in each process; launch plain DDP "
                                 f"(torchrun or accelerate launch without {name}), with trainer=lora for big models")
        if self.world_size > 1:
            from accelerate import PartialState

            self._state = PartialState()  # starts the process group: nccl on GPUs, gloo on CPU
            if self.rank != 0:  # one copy of every log line
                logging.getLogger("mbdef").setLevel(logging.WARNING)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    @contextlib.contextmanager
    def main_holds(self, lock):
        """`lock` (a FileLock or None) held by the main process around the block; the others wait for it
        to be taken, so all processes look at the guarded files in the same state."""
        ctx = lock if (lock is not None and self.is_main) else contextlib.nullcontext()
        with ctx:
            self.barrier()
            yield
            self.barrier()
