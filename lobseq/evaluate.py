"""Out-of-sample evaluation of a logged model against baselines, and its backtest.

    scores = evaluate_model("models:/lob@champion", "data/processed/new", split="test")
    pnl = backtest_model("runs:/<id>/model", "data/processed/new", cost_bps=1.0)

Conventions (every number in a report follows from these):

* **Model.** A URI (`runs:/ID/model`, a bare run id, `models:/NAME@alias`,
  `models:/NAME/VERSION`, `models:/<logged model id>`) is resolved with MLflow
  to the logged model's plain files; `lobseq.pyfunc.Forecaster` loads them and
  runs the forward pass. Windows are gathered from the dataset's RAW features
  and scaled with the MODEL'S scaler, so models trained on other data can be
  scored on the same dataset. The dataset must have the model's feature
  names, horizon and class count (else `LobseqError`), and a window at least
  as long as the model's (a model window T_m <= T scores the last T_m rows of
  each of the dataset's windows).
* **Same rows.** Model and every baseline are scored on exactly the split's
  window ends `Dataset.ends[split]`.
* **Baselines** (`lobseq.baselines`), fitted on the dataset's TRAIN window ends
  only (evenly subsampled to `max_baseline_train`): prior (majority class),
  persistence (the label of row t - horizon, the newest move fully known at
  t), logistic regression and gradient-boosted trees on the raw features of
  the last row of each window (the logistic baseline standardizes on train).
* **Intervals.** Circular block bootstrap (`lobseq.metrics.block_bootstrap_ci`)
  over the split's rows in time order, block >= horizon, 95% percentile
  intervals; differences are paired (same resampled rows for both).
* **Backtest rows.** The split's rows in order, in *runs*: a run is a maximal
  stretch of consecutive rows of one segment (instrument-day). The signal is
  defined at window-end rows and is 0 (no new decision) elsewhere; a decision
  at t is executed at t+1 and held for `horizon` rows (`lobseq.backtest`);
  no position is carried across a run boundary (day, instrument, or a gap in
  the split's rows), every position is closed at its run's last row. Rows
  without a finite positive mid (or bid/ask with `at_touch`) are dropped
  first. Risk metrics use P&L summed per calendar day of the row timestamps
  (all instruments together) and `periods_per_year` (252 trading days).
* **MLflow.** Each evaluation or backtest is its own run in the dataset's
  experiment (or nested in the active run, in its experiment), tagged
  `lobseq.model_run_id`, `lobseq.model_uri`, `dataset`, `dataset_hash`,
  `split`, `lobseq.kind` (`evaluation` | `backtest`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from lobseq.errors import LobseqError  # noqa: E402
from lobseq.splits import SPLIT_NAMES  # noqa: E402

BASELINE_NAMES = ("prior", "persistence", "logistic", "gbt")
TABLE_METRICS = ("macro_f1", "accuracy", "weighted_f1", "mcc", "cohen_kappa", "log_loss", "brier")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


# ------------------------------------------------------------------ model loading


@dataclass
class LoadedModel:
    forecaster: object  # lobseq.pyfunc.Forecaster
    uri: str
    run_id: str | None  # the run that logged the model

    @property
    def spec(self) -> dict:
        return self.forecaster.spec


def normalize_model_uri(model: str) -> str:
    """A bare run id becomes `runs:/ID/model`; `runs:/` and `models:/` URIs pass through."""
    model = str(model).strip()
    if _RUN_ID.fullmatch(model):
        return f"runs:/{model}/model"
    if model.startswith(("runs:/", "models:/")):
        return model
    raise LobseqError(f"'{model}' is not a model URI", field="model",
                      fix="pass a run id, runs:/ID/model, models:/NAME@alias or models:/NAME/VERSION")


def load_logged_model(model: str) -> LoadedModel:
    """Download a logged lobseq model's plain files and load them into a `Forecaster`."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from lobseq.pyfunc import Forecaster
    from lobseq.tracking import configure

    uri = normalize_model_uri(model)
    configure()
    with tempfile.TemporaryDirectory(prefix="lobseq-eval-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (MlflowException, OSError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise LobseqError(f"cannot resolve model '{model}': {first}", field="model",
                              fix="check the id with `mlflow ui` / `lobseq models`; use a run id, "
                                  "runs:/ID/model, models:/NAME@alias or models:/NAME/VERSION") from None
        mlmodel = local / "MLmodel"
        if not mlmodel.is_file():
            raise LobseqError(f"'{model}' is not a logged model (no MLmodel file)", field="model",
                              fix="point at the model a `lobseq train` run logged (runs:/ID/model)")
        meta = yaml.safe_load(mlmodel.read_text())
        artifacts = (meta.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
        paths = {k: local / v["path"] for k, v in artifacts.items() if isinstance(v, dict)}
        if not all(k in paths and paths[k].is_file() for k in ("keras_model", "scaler", "spec")):
            raise LobseqError(f"'{model}' is not a lobseq model (no model.keras/scaler.json/spec.json)",
                              field="model", fix="point at a model logged by `lobseq train`")
        forecaster = Forecaster.load(model_path=paths["keras_model"], scaler_path=paths["scaler"],
                                     spec_path=paths["spec"])
    return LoadedModel(forecaster=forecaster, uri=uri, run_id=meta.get("run_id"))


def _as_dataset(dataset):
    from lobseq.store import Dataset, load_dataset

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
    from lobseq.windows import gather_windows

    f = model.forecaster
    out = []
    for i in range(0, len(ends), batch_size):
        x = gather_windows(ds.features, ends[i:i + batch_size], f.window, f._mean, f._scale)
        out.append(np.asarray(f.forward(x), dtype=np.float64))
    if not out:
        return np.zeros((0, ds.n_classes))
    return np.concatenate(out)


# ------------------------------------------------------------------ baselines


def _evenly(ends: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or len(ends) <= limit:
        return ends
    return ends[np.unique(np.linspace(0, len(ends) - 1, limit).round().astype(np.int64))]


def fit_baselines(ds, train_ends: np.ndarray, *, max_train: int | None = 200_000,
                  seed: int = 0) -> dict:
    """Baselines fitted on `train_ends` only (last-row raw features / lagged labels)."""
    from threadpoolctl import threadpool_limits

    from lobseq.baselines import (
        GBTBaseline,
        LogisticBaseline,
        PersistenceBaseline,
        PriorBaseline,
        lagged_labels,
    )

    tr = _evenly(np.asarray(train_ends, dtype=np.int64), max_train)
    if len(tr) == 0:
        raise LobseqError("no training windows to fit the baselines on", file=ds.path)
    k = ds.n_classes
    y = np.asarray(ds.labels[tr], dtype=np.int64)
    x = np.asarray(ds.features[tr], dtype=np.float64)
    lag = lagged_labels(ds.labels, ds.horizon, ds.segment)
    # One thread: OpenMP/BLAS pools spinning next to TensorFlow's on a busy machine were
    # measured 20x slower than a single thread on these sizes.
    with threadpool_limits(limits=1):
        return {
            "prior": PriorBaseline(k).fit(x, y),
            "persistence": PersistenceBaseline(k, source="label").fit(lag[tr], y),
            "logistic": LogisticBaseline(k).fit(x, y),
            "gbt": GBTBaseline(k, random_state=seed, n_threads=1).fit(x, y),
            "_lagged": lag,
        }


def baseline_probas(baselines: dict, ds, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's (len(ends), K) probabilities on exactly the rows `ends`."""
    from threadpoolctl import threadpool_limits

    x = np.asarray(ds.features[ends], dtype=np.float64)
    out = {}
    with threadpool_limits(limits=1):
        for name in BASELINE_NAMES:
            b = baselines[name]
            out[name] = b.predict_proba(baselines["_lagged"][ends] if name == "persistence" else x)
    return out


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


@contextmanager
def mlflow_run(ds, run_name: str, tags: dict):
    """A run in the dataset's experiment, or nested in the active run (in its experiment).

    Ends FINISHED, FAILED on an exception, KILLED on Ctrl-C.
    """
    import mlflow

    from lobseq.tracking import configure, ending, ensure_experiment, run_tags

    tags = run_tags(ds, **tags)
    parent = mlflow.active_run()
    if parent is not None:
        run = mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=run_name,
                               nested=True, tags=tags)
    else:
        configure()
        run = mlflow.start_run(experiment_id=ensure_experiment(ds.name), run_name=run_name, tags=tags)
    with ending(run):
        yield run


def _numeric(d: dict) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        if np.isfinite(v):
            out[re.sub(r"[^A-Za-z0-9_\-. /]", "_", k)] = float(v)
    return out


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# ------------------------------------------------------------------ evaluate


def evaluate_model(model_uri: str, dataset_path, split: str = "test", *, n_boot: int = 1000,
                   seed: int = 0, max_baseline_train: int | None = 200_000,
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
    ds = _as_dataset(dataset_path)
    ends = _check_split(ds, split)
    model = load_logged_model(model_uri)
    check_compatible(model, ds)
    y = np.asarray(ds.labels[ends], dtype=np.int64)
    proba = predict_proba(model, ds, ends)
    baselines = fit_baselines(ds, ds.ends["train"], max_train=max_baseline_train, seed=seed)
    base = baseline_probas(baselines, ds, ends)
    scores = score_against_baselines(y, proba, base, ds.n_classes, ds.horizon, n_boot=n_boot,
                                     seed=seed)
    table = format_table(scores, f"Evaluation of {model.uri} on {ds.name} [{split}]")
    scores.update(split=split, dataset=ds.name, dataset_hash=ds.hash, model_uri=model.uri,
                  model_run_id=model.run_id or "", run_id="")
    if log:
        log(table)
    if log_to_mlflow:
        scores["run_id"] = _log_evaluation(ds, model, split, scores, table, y, proba, base,
                                           n_boot=n_boot, seed=seed)
        if log:
            log(f"MLflow run {scores['run_id']}")
    return scores


def _log_evaluation(ds, model, split, scores, table, y, proba, base, *, n_boot, seed) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from lobseq.labels import class_names
    from lobseq.metrics import confusion_matrix
    from lobseq.plots import plot_confusion_matrix, plot_reliability

    names = list(class_names(ds.n_classes))
    tags = {"lobseq.kind": "evaluation", "lobseq.model_run_id": model.run_id,
            "lobseq.model_uri": model.uri, "split": split}
    with mlflow_run(ds, f"evaluate-{ds.name}-{split}", tags) as run:
        mlflow.log_params({"model_uri": model.uri, "split": split, "n_boot": n_boot, "seed": seed,
                           "baselines": ",".join(base), "dataset_path": str(Path(ds.path).resolve())})
        mlflow.log_metrics(_numeric(scores))
        cm = confusion_matrix(y, proba.argmax(axis=1), ds.n_classes)
        with tempfile.TemporaryDirectory(prefix="lobseq-eval-") as tmp:
            tmp = Path(tmp)
            plot_confusion_matrix(cm, names, tmp / "confusion_matrix.png",
                                  title=f"Confusion matrix ({split})")
            plot_reliability(y, proba, tmp / "reliability.png")
            plot_reliability(y, proba, tmp / "reliability_per_class.png", mode="one_vs_rest",
                             class_names=names)
            for f in ("confusion_matrix.png", "reliability.png", "reliability_per_class.png"):
                mlflow.log_artifact(str(tmp / f), "plots")
        mlflow.log_text(table, "evaluation_table.txt")
        report = {**_jsonable(scores), "confusion_matrix": cm.tolist(), "class_names": names,
                  "baseline_confusion_matrices": {
                      n: confusion_matrix(y, p.argmax(axis=1), ds.n_classes).tolist()
                      for n, p in base.items()}}
        report.pop("run_id", None)
        mlflow.log_dict(report, "evaluation.json")
        return run.info.run_id


# ------------------------------------------------------------------ backtest


@dataclass
class BacktestRows:
    """The rows a backtest walks: dataset rows in order, their run ids and price arrays."""

    rows: np.ndarray   # dataset row indices, increasing
    run: np.ndarray    # run label per row (segment change or gap in rows → new run)
    mid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    day: np.ndarray    # calendar day (int, days since epoch) per row, for period P&L
    dropped: int       # rows dropped for non-finite or non-positive prices


def backtest_rows(ds, rows: np.ndarray, at_touch: bool = False) -> BacktestRows:
    rows = np.asarray(rows, dtype=np.int64)
    seg = np.asarray(ds.segment[rows])
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (seg[1:] != seg[:-1]) | (np.diff(rows) > 1)
    run = np.cumsum(new) - 1
    px = np.asarray(ds.prices[rows], dtype=np.float64)
    cols = px if at_touch else px[:, :1]
    ok = np.isfinite(cols).all(axis=1) & (cols > 0).all(axis=1)
    day = np.asarray(ds.timestamps[rows], dtype=np.int64) // (86_400 * 10**9)
    return BacktestRows(rows=rows[ok], run=run[ok], mid=px[ok, 0], bid=px[ok, 1], ask=px[ok, 2],
                        day=day[ok], dropped=int((~ok).sum()))


def signal_on_rows(br: BacktestRows, ends: np.ndarray, proba: np.ndarray, tau: float,
                   mode: str) -> np.ndarray:
    """-1/0/+1 per backtest row: from `proba` at window ends, 0 at every other row."""
    from lobseq.backtest import positions_from_proba

    sig = positions_from_proba(proba, tau=tau, mode=mode)
    pos = np.searchsorted(br.rows, ends)
    hit = (pos < len(br.rows)) & (br.rows[np.minimum(pos, len(br.rows) - 1)] == ends)
    out = np.zeros(len(br.rows), dtype=np.int8)
    out[pos[hit]] = sig[hit]
    return out


def run_on_rows(br: BacktestRows, signal, *, horizon: int, cost_bps: float, at_touch: bool,
                periods_per_year: float, buy_hold: bool = False):
    """`lobseq.backtest.run_backtest` per the module conventions; risk metrics on daily P&L."""
    from lobseq.backtest import buy_and_hold, risk_metrics, run_backtest

    kw = dict(bid=br.bid, ask=br.ask, cost_bps=cost_bps, at_touch=at_touch,
              periods_per_year=periods_per_year, day=br.run)
    res = (buy_and_hold(br.mid, **kw) if buy_hold
           else run_backtest(signal, br.mid, horizon=horizon, **kw))
    _, inv = np.unique(br.day, return_inverse=True)
    period_pnl = np.bincount(inv, weights=res.pnl) if len(br.day) else np.zeros(0)
    res.period_pnl = period_pnl
    trades_per_row = np.abs(np.diff(res.position.astype(np.int64), prepend=0)).sum()
    res.metrics.update(risk_metrics(period_pnl, periods_per_year))
    res.metrics.update(n_periods=int(period_pnl.size),
                       turnover=float(trades_per_row / max(period_pnl.size, 1)))
    return res


def trade_log(ds, br: BacktestRows, trades: pd.DataFrame) -> pd.DataFrame:
    """The backtest's trades with dataset rows, timestamps, instrument and day."""
    t = trades.copy()
    segs = ds.manifest.get("segments") or []
    for col in ("signal_row", "entry_row", "exit_row"):
        idx = t[col].to_numpy(np.int64).clip(0, max(len(br.rows) - 1, 0))
        t[col] = br.rows[idx] if len(br.rows) else idx
        t[col.replace("_row", "_time")] = pd.to_datetime(np.asarray(ds.timestamps[t[col]]))
    seg_of = np.asarray(ds.segment[t["entry_row"].to_numpy(np.int64)]) if len(t) else []
    t.insert(0, "instrument", [segs[s]["instrument"] if s < len(segs) else "" for s in seg_of])
    t.insert(1, "day", [segs[s]["day"] if s < len(segs) else "" for s in seg_of])
    return t


def backtest_model(model_uri: str, dataset_path, split: str = "test", *, tau: float = 0.0,
                   mode: str = "long_short", cost_bps: float = 0.0, at_touch: bool = False,
                   periods_per_year: float = 252.0, max_baseline_train: int | None = 200_000,
                   seed: int = 0, log_to_mlflow: bool = True,
                   log: Callable[[str], None] | None = print) -> dict:
    """Trade the model's probabilities on `split` (module conventions), next to buy-and-hold
    and the baselines' signals under the same rules.

    Returns a flat dict `<who>_<metric>` for who in model, buy_and_hold, prior,
    persistence, logistic, gbt and the metrics of `lobseq.backtest.run_backtest`
    (total_return, annualized_return/volatility, sharpe, sortino, max_drawdown,
    hit_rate, turnover, n_trades, exposure, total_cost, n_periods ...), plus
    `rows`, `dropped_rows`, and the strings `split`, `model_uri`, `model_run_id`, `run_id`.
    """
    from lobseq.backtest import MODES

    if mode not in MODES:
        raise LobseqError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if tau < 0 or cost_bps < 0 or periods_per_year <= 0:
        raise LobseqError("tau and cost_bps must be >= 0 and periods_per_year > 0",
                          field="tau/cost_bps/periods_per_year")
    ds = _as_dataset(dataset_path)
    ends = _check_split(ds, split)
    model = load_logged_model(model_uri)
    check_compatible(model, ds)
    proba = predict_proba(model, ds, ends)
    baselines = fit_baselines(ds, ds.ends["train"], max_train=max_baseline_train, seed=seed)
    probas = {"model": proba, **baseline_probas(baselines, ds, ends)}
    rows = np.flatnonzero(np.asarray(ds.split) == SPLIT_NAMES.index(split))
    br, results, out = backtest_probas(ds, rows, ends, probas, tau=tau, mode=mode,
                                       cost_bps=cost_bps, at_touch=at_touch,
                                       periods_per_year=periods_per_year, what=f"the '{split}' split")
    out.update(split=split, model_uri=model.uri, model_run_id=model.run_id or "", run_id="")
    table = format_backtest_table(out, list(results),
                                  f"Backtest of {model.uri} on {ds.name} [{split}]  mode {mode}, "
                                  f"tau {tau:g}, cost {cost_bps:g} bps"
                                  + (", at touch" if at_touch else ", at mid"))
    if log:
        log(table)
    if log_to_mlflow:
        params = {"model_uri": model.uri, "split": split, "tau": tau, "mode": mode,
                  "cost_bps": cost_bps, "at_touch": at_touch, "periods_per_year": periods_per_year,
                  "horizon": ds.horizon}
        out["run_id"] = log_backtest(ds, br, results, out, table, params,
                                     tags={"lobseq.kind": "backtest",
                                           "lobseq.model_run_id": model.run_id,
                                           "lobseq.model_uri": model.uri, "split": split},
                                     run_name=f"backtest-{ds.name}-{split}")
        if log:
            log(f"MLflow run {out['run_id']}")
    return out


def backtest_probas(ds, rows: np.ndarray, ends: np.ndarray, probas: dict[str, np.ndarray], *,
                    tau: float = 0.0, mode: str = "long_short", cost_bps: float = 0.0,
                    at_touch: bool = False, periods_per_year: float = 252.0,
                    what: str = "the rows") -> tuple[BacktestRows, dict, dict]:
    """Backtest each `probas[who]` (probabilities at `ends`) over `rows`, plus buy-and-hold.

    Returns (rows walked, {who: BacktestResult}, flat `<who>_<metric>` dict with
    `rows` and `dropped_rows`).
    """
    br = backtest_rows(ds, rows, at_touch)
    if len(br.rows) < 3:
        raise LobseqError(f"{what} has fewer than 3 rows with prices to trade", file=ds.path,
                          field="split")
    kw = dict(horizon=ds.horizon, cost_bps=cost_bps, at_touch=at_touch,
              periods_per_year=periods_per_year)
    results = {who: run_on_rows(br, signal_on_rows(br, ends, p, tau, mode), **kw)
               for who, p in probas.items()}
    results["buy_and_hold"] = run_on_rows(br, None, buy_hold=True, **kw)
    out: dict = {}
    for who, res in results.items():
        out.update({f"{who}_{k}": v for k, v in res.metrics.items()})
    out.update(rows=int(len(br.rows)), dropped_rows=br.dropped)
    return br, results, out


BACKTEST_COLUMNS = ("total_return", "sharpe", "sortino", "max_drawdown", "hit_rate", "n_trades",
                    "exposure", "total_cost")


def format_backtest_table(metrics: dict, who: list[str], title: str = "") -> str:
    head = f"{'':<14}" + "".join(f"{c:>14}" for c in BACKTEST_COLUMNS)
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for w in who:
        cells = []
        for c in BACKTEST_COLUMNS:
            v = metrics.get(f"{w}_{c}", float("nan"))
            cells.append(f"{int(v):>14,}" if c == "n_trades" else f"{v:>14.4f}")
        lines.append(f"{w:<14}" + "".join(cells))
    n = metrics.get(f"{who[0]}_n_periods", 0) if who else 0
    lines.append(f"periods (days) {int(n)}; Sharpe/Sortino annualized from daily P&L"
                 + ("; undefined with one period" if n < 2 else ""))
    # Units, since additive returns can read as impossible (e.g. total_return below -1).
    lines.append("returns and drawdown are additive fractions of one unit of capital per trade "
                 "(0.0065 = 0.65%); hit_rate is per closed trade; turnover per period")
    return "\n".join(lines)


def log_backtest(ds, br: BacktestRows, results: dict, metrics: dict, table: str, params: dict,
                 tags: dict, run_name: str) -> str:
    """One MLflow run: metrics, equity + drawdown PNG, trade log CSV, daily P&L CSV."""
    import mlflow

    with mlflow_run(ds, run_name, tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(_numeric(metrics))
        log_backtest_artifacts(ds, br, results, table, title=f"Equity: {run_name}")
        return run.info.run_id


def log_backtest_artifacts(ds, br: BacktestRows, results: dict, table: str, title: str = "Equity",
                           artifact_dir: str = "backtest") -> None:
    """Into the active run: equity + drawdown PNG (the first result against the others),
    the first result's trade log, everyone's daily P&L, and the printed table."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from lobseq.plots import plot_equity

    lead = "model" if "model" in results else next(iter(results))
    with tempfile.TemporaryDirectory(prefix="lobseq-bt-") as tmp:
        tmp = Path(tmp)
        res = results[lead]
        plot_equity(res.equity, res.drawdown, tmp / "equity.png",
                    benchmark={w: r.equity for w, r in results.items() if w != lead}, title=title)
        trade_log(ds, br, res.trades).to_csv(tmp / "trades.csv", index=False)
        daily = pd.DataFrame({"date": pd.to_datetime(np.unique(br.day), unit="D")})
        for w, r in results.items():
            daily[w] = r.period_pnl
        daily.to_csv(tmp / "daily_pnl.csv", index=False)
        for f in ("equity.png", "trades.csv", "daily_pnl.csv"):
            mlflow.log_artifact(str(tmp / f), artifact_dir)
    mlflow.log_text(table, f"{artifact_dir}/backtest_table.txt")
