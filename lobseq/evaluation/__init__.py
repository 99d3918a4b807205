"""Evaluation: metrics against baselines with intervals, backtests and walk-forward testing."""
