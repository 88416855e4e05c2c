"""mbdef's Optuna sweeper for Hydra (`hydra/sweeper=optuna`, conf/hydra/sweeper/optuna.yaml): optuna_sweeper.py."""
