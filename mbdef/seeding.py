"""One independent random stream per consumer of randomness.

Every draw in a run comes from `stream(seed, NAME)`: a generator seeded by the run seed *and* a stable name,
so two consumers never share draws (the attacker's sample choice and the defender's cannot coincide), and
changing how much one consumer draws (T defensive triggers, a larger recovery set) never moves another's.
Python seeds a `random.Random` from a string through SHA-512, which is stable across runs, machines and
Python versions.
"""

from __future__ import annotations

import hashlib
import random

# The names, one per consumer; a new consumer adds its own here rather than reusing one.
DATA_TRAIN = "data/train"
DATA_PRETRAIN = "data/pretrain"
DATA_POOL = "data/defense_pool"
DATA_VALIDATION = "data/validation"
DATA_TEST = "data/test"
DATA_SPLIT = "data/split"                  # carving pool/test out of a user's file
DATA_POISONED_CAP = "data/poisoned_cap"    # which rows of a pre-poisoned file a cap on them keeps
DATA_PROMPT_SPLIT = "data/prompt_split"    # a benchmark's validation/test prompts (hashed with seed 0: fixed)
ATTACK_CHOICE = "attack/choice"            # which records the attacker poisons
ATTACK_PLACEMENT = "attack/placement"      # where its trigger goes, which target string
ATTACK_TEST = "attack/test"                # triggered copies of the evaluation prompts
DEFENSE_TRIGGERS = "defense/triggers"      # MB-Defense's generated defensive triggers
DEFENSE_CHOICE = "defense/choice"          # which training records carry a defensive trigger
DEFENSE_PLACEMENT = "defense/placement"
DEFENSE_RECOVERY = "defense/recovery"      # which pool records form the small clean (recovery) set
RECOVERY_PLACEMENT = "defense/recovery_placement"
RANDOM_INSERT = "defense/random_insert"    # the augmentation control's fresh words
ORACLE_PLACEMENT = "oracle/placement"      # where the oracle control puts the attacker's trigger
PDB_TRIGGER = "pdb/trigger"
PDB_CHOICE = "pdb/choice"
DEFENSE_SAMPLING = "defense/sampling"         # the decoding-time defense's sampling
MODEL_INIT = "model/init"
TRAIN_PRETRAIN = "training/pretrain"
TRAIN_STAGE1 = "training/stage1"
TRAIN_STAGE2 = "training/stage2"
EVAL_RANDOM_WORD = "eval/random_word"
EVAL_REPRESENTATION = "eval/representation"
EVAL_REACTIVATION = "eval/reactivation"


def stream(seed: int, name: str) -> random.Random:
    """The generator of consumer `name` for run seed `seed`."""
    return random.Random(f"mbdef:{name}:{int(seed)}")


def derive_seed(seed: int, name: str) -> int:
    """An integer seed for a library that takes one (torch, the Trainer), derived the same way."""
    return int.from_bytes(hashlib.sha256(f"mbdef:{name}:{int(seed)}".encode()).digest()[:4], "little")


def seed_libraries(seed: int) -> None:
    """Python's, numpy's and torch's global generators, for library code that draws from them."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
