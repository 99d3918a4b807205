"""Data: raw sources → canonical frames → causal features and labels → splits, scaler, windows, store.

Nothing here looks past row t, guesses silently, or materializes all N×T×F windows.
"""
