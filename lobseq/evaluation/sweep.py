"""A sweep whose configurations may be scored on walk-forward folds.

    sweep("data/processed/sim", TrainConfig(model="gru"), TuneConfig(space=Path("s.yaml"), folds=3))

`lobseq.training.tune.tune_model` runs the sweep; walk-forward folds belong to
this (evaluation) layer, so they are made here and passed down: with
`cfg.folds = K`, the K folds of `make_folds(WalkForwardConfig(folds=K))`
(calendar days when the dataset has at least 3, else rows; rolling; an embargo
of window + label reach - 1), each scored on its validation tail.
"""

from __future__ import annotations

from lobseq.evaluation.folds import WalkForwardConfig, make_folds


def sweep(dataset_path, train_cfg, cfg, **options) -> dict:
    """`tune_model(dataset, train_cfg, cfg, folds=..., **options)`; see the module docstring."""
    from lobseq.evaluation.evaluate import _as_dataset
    from lobseq.training.tune import tune_model

    ds = _as_dataset(dataset_path)
    folds = make_folds(ds, WalkForwardConfig(folds=cfg.folds))[0] if cfg.folds else None
    return tune_model(ds, train_cfg, cfg, folds=folds, **options)
