"""data: canonical records `{instruction, input, output}` and their train / defense-pool / test splits."""

from mbdef.data.records import DataError, load_alpaca, save_records, validate_record
from mbdef.data.synthetic import DataSplits, synthetic_splits

__all__ = ["DataError", "DataSplits", "load_alpaca", "save_records", "synthetic_splits", "validate_record",
           "alpaca_splits"]


def alpaca_splits(train_file: str, test_file: str | None = None, defense_pool_file: str | None = None,
                  n_defense_pool: int = 512, n_test: int = 200, seed: int = 0, n_train: int | None = None) -> DataSplits:
    """Splits from local Alpaca JSON/JSONL files; missing pool/test files are carved out of the train file."""
    import random

    train = load_alpaca(train_file)
    rng = random.Random(seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    test = load_alpaca(test_file) if test_file else None
    pool = load_alpaca(defense_pool_file) if defense_pool_file else None
    carve = (0 if pool is not None else n_defense_pool) + (0 if test is not None else n_test)
    if carve >= len(train):
        raise DataError(f"{train_file}: {len(train)} records cannot provide {carve} held-out pool/test records")
    held, rest = [train[i] for i in order[:carve]], [train[i] for i in order[carve:]]
    if n_train:  # cap the training part (after the held-out carve, so pool/test stay unseen)
        rest = rest[:n_train]
    if pool is None:
        pool, held = held[:n_defense_pool], held[n_defense_pool:]
    if test is None:
        test = held[:n_test]
    return DataSplits(train=rest, defense_pool=pool, test=test, name="alpaca_json")
