"""Out-of-sample evaluation of a logged model against baselines, and its backtest.

    scores = evaluate_model("models:/lob@champion", "data/processed/new", split="test")
    pnl = backtest_model("runs:/<id>/model", "data/processed/new", cost_bps=1.0)

Conventions (every number in a report follows from these):

* **Model.** A URI (`runs:/ID/model`, a bare run id, `models:/NAME@alias`,
  `models:/NAME/VERSION`, `models:/<logged model id>`) is resolved with MLflow
  once by `lobseq.serving.loader.load_model`; its `Forecaster` scores the
  windows (`proba_windows`: the forward pass batch predict and the service
  use). Windows are gathered from the dataset's RAW features and scaled
  with the MODEL'S scaler, so models trained on other data can be scored on
  the same dataset. The dataset must have the model's feature
  names, horizon and class count (else `LobseqError`), and a window at least
  as long as the model's (a model window T_m <= T scores the last T_m rows of
  each of the dataset's windows).
* **Same rows.** Model and every baseline are scored on exactly the split's
  window ends `Dataset.ends[split]`.
* **Baselines** (`lobseq.evaluation.baselines`), fitted on the dataset's TRAIN
  window ends only (evenly subsampled to `max_baseline_train`) with the model's
  class weighting (read from its training run), logistic regression and
  gradient-boosted trees tuned on the VALIDATION window ends: prior (majority
  class), persistence (the label of row t - reach, the newest move fully known
  at t), logistic regression and gradient-boosted trees on the last row, the
  window mean and last-minus-first of each raw feature.
* **Verdict** (`lobseq.evaluation.verdict`): one line, macro-F1 against the best
  baseline beyond / within / worse than the paired interval, and accuracy next
  to the majority rate; printed, tagged `lobseq.verdict`, saved as `verdict.md`.
* **Execution contract.** The dataset must record the current one
  (`lobseq.data.execution`); one ingested under another is refused.
* **Intervals.** Circular block bootstrap (`lobseq.metrics.block_bootstrap_ci`)
  over the split's rows in time order, block >= horizon, 95% percentile
  intervals; differences are paired (same resampled rows for both).
* **Backtest rows.** The split's rows in order, in *runs*: a run is a maximal
  stretch of consecutive rows of one segment (instrument-day). The signal is
  defined at window-end rows and is 0 (no new decision) elsewhere; a decision
  at t is traded as the execution contract says (entered `entry_lag` rows
  later, held `horizon` rows, in sleeves of 1/horizon: see
  `lobseq.evaluation.backtest.engine`); no position crosses a run boundary
  (day, instrument, or a gap in the split's rows). Rows without a finite
  positive price (or bid/ask at the touch) are dropped first. Periods: days
  for bars, a clock interval (1 minute) for books (`backtest.model`).
* **MLflow.** Each evaluation or backtest is its own run, tagged
  `lobseq.model_run_id`, `lobseq.model_uri`, `dataset`, `dataset_hash`,
  `split`, `lobseq.kind` (`evaluation` | `backtest`); where it lands, its name,
  its metric names and the scores it copies onto the model's training run:
  `lobseq.evaluation.runs`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lobseq.data.splits import SPLIT_NAMES
from lobseq.errors import LobseqError
from lobseq.evaluation.baselines import BASELINE_NAMES, baseline_probas, fit_baselines
from lobseq.evaluation.config import EvaluateConfig
from lobseq.serving.loader import LoadedModel, load_model

TABLE_METRICS = ("macro_f1", "accuracy", "weighted_f1", "mcc", "cohen_kappa", "log_loss", "brier")


# ------------------------------------------------------------------ model loading


def _as_dataset(dataset):
    from lobseq.data.store import Dataset, load_dataset

    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def _check_split(ds, split: str) -> np.ndarray:
    if split not in SPLIT_NAMES:
        raise LobseqError(f"unknown split '{split}'", field="split",
                          fix=f"use one of {', '.join(SPLIT_NAMES)}")
    ends = np.asarray(ds.ends[split], dtype=np.int64)
    if len(ends) == 0:
        raise LobseqError(f"the dataset has no '{split}' windows", file=ds.path, field="split",
                          fix="pick another split or re-ingest with other fractions")
    return ends


def check_compatible(model: LoadedModel, ds) -> None:
    """The dataset must carry the model's features, horizon, classes and a long enough window."""
    spec = model.spec
    want, have = list(spec["feature_names"]), list(ds.feature_names)
    if want != have:
        missing = [f for f in want if f not in have]
        extra = [f for f in have if f not in want]
        detail = (f"missing {', '.join(missing[:5])}" if missing else "") + \
                 ("; " if missing and extra else "") + (f"extra {', '.join(extra[:5])}" if extra else "")
        raise LobseqError(
            f"the dataset's features differ from the model's ({len(have)} vs {len(want)} features"
            + (f"; {detail}" if detail else "; same names, other order") + ")",
            file=ds.path, field="features",
            fix="ingest the data with the model's feature set and book levels")
    if spec.get("head", "classification") != "classification":
        raise LobseqError("only classification models can be scored and backtested here",
                          field="model", fix="train with --head classification")
    for key, have_v in (("horizon", ds.horizon), ("n_classes", ds.n_classes)):
        if int(spec[key]) != int(have_v):
            raise LobseqError(f"the model was trained for {key} {spec[key]}, the dataset has {have_v}",
                              file=ds.path, field=key, fix=f"ingest with the model's {key}")
    if int(spec["window"]) > ds.window:
        raise LobseqError(f"the model's window {spec['window']} is longer than the dataset's "
                          f"{ds.window}", file=ds.path, field="window",
                          fix=f"ingest with --window {spec['window']} or more")


def predict_proba(model: LoadedModel, ds, ends: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """(len(ends), K) float64 class probabilities at `ends`, scaled with the model's own scaler."""
    return model.forecaster.proba_windows(ds.features, ends, batch_size)


# ------------------------------------------------------------------ baselines


# ------------------------------------------------------------------ scoring


def score_against_baselines(y: np.ndarray, proba: np.ndarray, base: dict[str, np.ndarray],
                            n_classes: int, horizon: int, *, n_boot: int = 1000,
                            seed: int = 0) -> dict:
    """Flat scores: the model's metrics unprefixed, `baseline_<name>_<metric>`, macro-F1
    intervals (`*_ci_low/_ci_high`) and paired differences `diff_macro_f1_vs_<name>`."""
    from lobseq.metrics import block_bootstrap_ci, classification_metrics

    out: dict = dict(classification_metrics(y, proba, n_classes))
    pred = proba.argmax(axis=1)
    ci = block_bootstrap_ci(y, pred, metric="macro_f1", n_boot=n_boot, seed=seed,
                            n_classes=n_classes, horizon=horizon)
    out.update(macro_f1_ci_low=ci["lo"], macro_f1_ci_high=ci["hi"], bootstrap_block=ci["block"],
               bootstrap_n=ci["n_boot"])
    for name, p in base.items():
        for key, v in classification_metrics(y, p, n_classes).items():
            out[f"baseline_{name}_{key}"] = v
        own = block_bootstrap_ci(y, p.argmax(axis=1), metric="macro_f1", n_boot=n_boot,
                                 seed=seed, n_classes=n_classes, horizon=horizon)
        # same seed, same rows: paired with the model's resamples above
        d = block_bootstrap_ci(y, pred, p.argmax(axis=1), metric="macro_f1", n_boot=n_boot,
                               seed=seed, n_classes=n_classes, horizon=horizon)
        out[f"baseline_{name}_macro_f1_ci_low"] = own["lo"]
        out[f"baseline_{name}_macro_f1_ci_high"] = own["hi"]
        out[f"diff_macro_f1_vs_{name}"] = d["diff"]
        out[f"diff_macro_f1_vs_{name}_ci_low"] = d["diff_lo"]
        out[f"diff_macro_f1_vs_{name}_ci_high"] = d["diff_hi"]
        out[f"p_model_le_{name}"] = d["p_diff_le_0"]
    if base:
        best = max(base, key=lambda n: out[f"baseline_{n}_macro_f1"])
        out["best_baseline"] = best
        for suffix in ("", "_ci_low", "_ci_high"):
            out[f"diff_macro_f1_vs_best{suffix}"] = out[f"diff_macro_f1_vs_{best}{suffix}"]
        out["p_model_le_best"] = out[f"p_model_le_{best}"]
    return out


def format_table(scores: dict, title: str = "") -> str:
    """The model and the baselines side by side, macro-F1 with its interval."""
    names = ["model", *[n for n in BASELINE_NAMES if f"baseline_{n}_macro_f1" in scores]]

    def get(who, key):
        return scores.get(key if who == "model" else f"baseline_{who}_{key}", float("nan"))

    head = f"{'':<12} {'macro-F1 [95% CI]':<26}" + "".join(f"{m:>12}" for m in TABLE_METRICS[1:])
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for who in names:
        f1 = f"{get(who, 'macro_f1'):.4f} [{get(who, 'macro_f1_ci_low'):.4f}, " \
             f"{get(who, 'macro_f1_ci_high'):.4f}]"
        lines.append(f"{who:<12} {f1:<26}" + "".join(f"{get(who, m):>12.4f}" for m in TABLE_METRICS[1:]))
    lines.append("")
    for who in names[1:]:
        d = scores[f"diff_macro_f1_vs_{who}"]
        lines.append(f"model - {who:<12} macro-F1 {d:+.4f} [{scores[f'diff_macro_f1_vs_{who}_ci_low']:+.4f}, "
                     f"{scores[f'diff_macro_f1_vs_{who}_ci_high']:+.4f}]"
                     f"   P(model <= {who}) {scores[f'p_model_le_{who}']:.3f}")
    if "best_baseline" in scores:
        lines.append(f"best baseline: {scores['best_baseline']}   rows {int(scores['n']):,}   "
                     f"bootstrap block {int(scores['bootstrap_block'])} x {int(scores['bootstrap_n'])}")
    return "\n".join(lines)


# ------------------------------------------------------------------ MLflow


# ------------------------------------------------------------------ evaluate


_DEFAULTS = EvaluateConfig()  # the defaults below are EvaluateConfig's, declared there once


def evaluate_model(model_uri: str, dataset_path, split: str = _DEFAULTS.split, *,
                   n_boot: int = _DEFAULTS.n_boot, seed: int = _DEFAULTS.seed,
                   max_baseline_train: int | None = _DEFAULTS.max_baseline_train,
                   log_to_mlflow: bool = True, log: Callable[[str], None] | None = print) -> dict:
    """Score a logged model and the baselines on the same rows of `split`, with intervals.

    Returns a flat dict: the model's metrics (`accuracy`, `macro_f1`, `weighted_f1`,
    `balanced_accuracy`, `mcc`, `cohen_kappa`, `log_loss`, `brier`,
    `precision_/recall_/f1_/support_/predicted_<class>`, `n`), `macro_f1_ci_low/high`,
    `baseline_<name>_<metric>` for prior/persistence/logistic/gbt (plus their macro-F1
    intervals), `diff_macro_f1_vs_<name>[_ci_low|_ci_high]`, `p_model_le_<name>`,
    the same `..._best` for the best baseline (`best_baseline`), and the strings
    `split`, `dataset`, `dataset_hash`, `model_uri`, `model_run_id`, `run_id`
    (the evaluation's MLflow run, '' when not logged).
    """
    from lobseq.data.execution import execution_of
    from lobseq.evaluation.baselines import describe_baselines
    from lobseq.evaluation.verdict import majority_rate, model_class_weight, verdict

    ds = _as_dataset(dataset_path)
    execution_of(ds.manifest, ds.path)  # labels under another convention: refused here
    ends = _check_split(ds, split)
    model = load_model(model_uri)
    check_compatible(model, ds)
    y = np.asarray(ds.labels[ends], dtype=np.int64)
    proba = predict_proba(model, ds, ends)
    baselines = fit_baselines(ds, ds.ends["train"], ds.ends["val"],
                              class_weight=model_class_weight(model),
                              max_train=max_baseline_train, seed=seed)
    base = baseline_probas(baselines, ds, ends)
    scores = score_against_baselines(y, proba, base, ds.n_classes, ds.horizon, n_boot=n_boot,
                                     seed=seed)
    scores["majority_class"], scores["majority_rate"] = majority_rate(ds, split)
    scores["baseline_class_weight"] = baselines["_info"]["class_weight"]
    v = verdict(scores)
    table = (format_table(scores, f"Evaluation of {model.uri} on {ds.name} [{split}]")
             + f"\n{describe_baselines(baselines)}\nverdict: {v.line}")
    scores.update(split=split, dataset=ds.name, dataset_hash=ds.hash, model_uri=model.uri,
                  model_run_id=model.run_id or "", run_id="", verdict=v.line)
    if log:
        log(table)
    if log_to_mlflow:
        from lobseq.evaluation.runs import log_evaluation

        scores["run_id"] = log_evaluation(ds, model, split, scores, table, y, proba, base,
                                          n_boot=n_boot, seed=seed, verdict=v)
        if log:
            log(f"MLflow run {scores['run_id']}")
    return scores
