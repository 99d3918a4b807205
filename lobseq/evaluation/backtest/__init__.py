"""Backtests: the execution engine (`engine`), a model's backtest on a dataset (`model`),
and its tables and MLflow record (`report`)."""
