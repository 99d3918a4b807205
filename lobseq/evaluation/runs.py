"""What evaluations and backtests record in MLflow: their runs, metric names, and the headline
scores they copy onto the model's training run.

Metric names (one scheme for every run; `<split>` is val, test, or oos for walk-forward):

* model: `<split>_<metric>` (`test_macro_f1`, `test_macro_f1_ci_low`, `test_log_loss`, ...)
* baselines: `<split>_baseline_<name>_<metric>`; the best one `<split>_best_baseline_macro_f1`
  (its name is the tag `<split>_best_baseline`)
* model against baselines: `<split>_diff_macro_f1_vs_<name|best>[_ci_low|_ci_high]`,
  `<split>_p_model_le_<name|best>`
* backtests: `<split>_bt_<who>_<metric>` with who = model, buy_and_hold or a baseline
  (`test_bt_model_sharpe`, `test_bt_buy_and_hold_total_return`)

Where the runs go: nested under the active run (a pipeline's stage run); else,
for a standalone `lobseq evaluate/backtest`, under the model's training run (in
its experiment), so a model's evaluations sit with it; else in an experiment
named after the dataset. Named `<model> · evaluate · <split>` /
`<model> · backtest · <split>`, where <model> is the architecture (and the
registered name when the URI is `models:/NAME@alias` or `models:/NAME/VERSION`).

When the dataset is the one the model was trained on (same manifest hash), the
headline scores (`HEADLINE_EVALUATION`, `HEADLINE_BACKTEST` under the names above)
are also logged on the training run, so the runs table compares models; the
latest evaluation or backtest of a split wins.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

HEADLINE_EVALUATION = ("macro_f1_ci_low", "macro_f1_ci_high", "best_baseline_macro_f1",
                       "diff_macro_f1_vs_best", "diff_macro_f1_vs_best_ci_low",
                       "diff_macro_f1_vs_best_ci_high", "p_model_le_best")
HEADLINE_BACKTEST = ("model_total_return", "model_sharpe", "model_max_drawdown", "model_n_trades",
                     "buy_and_hold_total_return")


def evaluation_metrics(scores: dict, split: str) -> dict[str, float]:
    """Every numeric score of `evaluate_model` as `<split>_<key>`, plus the best baseline's macro-F1."""
    from lobseq.tracking import numeric

    out = {f"{split}_{k}": v for k, v in numeric(scores).items()}
    best = scores.get("best_baseline")
    if best and f"baseline_{best}_macro_f1" in scores:
        out[f"{split}_best_baseline_macro_f1"] = float(scores[f"baseline_{best}_macro_f1"])
    return out


def evaluation_headline(scores: dict, split: str) -> dict[str, float]:
    """The model's macro-F1 with its interval, the baselines' macro-F1 and the comparison."""
    every = evaluation_metrics(scores, split)
    keys = ["macro_f1", *HEADLINE_EVALUATION,
            *[k[len(split) + 1:] for k in every if k.startswith(f"{split}_baseline_")
              and k.endswith("_macro_f1")]]
    return {f"{split}_{k}": every[f"{split}_{k}"] for k in keys if f"{split}_{k}" in every}


def backtest_metrics(out: dict, split: str) -> dict[str, float]:
    from lobseq.tracking import numeric

    return {f"{split}_bt_{k}": v for k, v in numeric(out).items()}


def backtest_headline(out: dict, split: str) -> dict[str, float]:
    every = backtest_metrics(out, split)
    return {f"{split}_bt_{k}": every[f"{split}_bt_{k}"] for k in HEADLINE_BACKTEST
            if f"{split}_bt_{k}" in every}


def _training_run(model):
    import mlflow
    from mlflow.exceptions import MlflowException

    if not model.run_id:
        return None
    try:
        return mlflow.MlflowClient().get_run(model.run_id)
    except MlflowException:
        return None


def model_label(model, training_run=None) -> str:
    """`gru`, or `gru (lobseq-demo@champion)` for a registry URI."""
    arch = training_run.data.tags.get("model", "") if training_run is not None else ""
    ref = model.uri[len("models:/"):] if model.uri.startswith("models:/") else ""
    registered = ref if ref and not ref.startswith("m-") else ""
    if arch and registered:
        return f"{arch} ({registered})"
    return arch or registered or "model"


def copy_to_training_run(training_run, ds, metrics: dict, tags: dict | None = None) -> bool:
    """Log `metrics` (and tags) on the model's training run when it trained on `ds`."""
    import mlflow

    from lobseq.tracking import describe_training_run, log_metrics_on, set_description

    if training_run is None or training_run.data.tags.get("dataset_hash") != ds.hash:
        return False
    run_id = training_run.info.run_id
    log_metrics_on(run_id, metrics)
    for k, v in (tags or {}).items():
        mlflow.MlflowClient().set_tag(run_id, k, str(v))
    set_description(describe_training_run(mlflow.MlflowClient().get_run(run_id), with_run_id=False),
                    run_id)
    return True


def table_description(title: str, table: str) -> str:
    """Markdown: a bold title over the printed table (fixed width)."""
    return f"**{title}**\n\n```\n{table}\n```"


def run_context(model, ds, step: str, split: str, kind: str, extra_tags: dict):
    """(tracked run context, training run) for an evaluation or backtest of `model` on `ds`."""
    from lobseq.tracking import run_name, tracked_run

    training = _training_run(model)
    tags = {"lobseq.model_run_id": model.run_id, "lobseq.model_uri": model.uri, "split": split,
            "model": training.data.tags.get("model") if training is not None else None,
            **extra_tags}
    ctx = tracked_run(run_name(model_label(model, training), step, split), kind,
                      experiment=ds.name, parent=model.run_id, dataset=ds, tags=tags)
    return ctx, training


def log_evaluation(ds, model, split, scores, table, y, proba, base, *, n_boot, seed,
                   verdict=None) -> str:
    """The evaluation's run: params, `<split>_*` metrics, plots, table and report; returns its id."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from lobseq.data.labels import class_names
    from lobseq.metrics import confusion_matrix
    from lobseq.plots import plot_confusion_matrix, plot_reliability
    from lobseq.tracking import jsonable, set_description

    names = list(class_names(ds.n_classes))
    ctx, training = run_context(model, ds, "evaluate", split, "evaluation", {})
    with ctx as run:
        set_description(table_description(f"{run.info.run_name} on {ds.name}", table))
        mlflow.log_params({"model_uri": model.uri, "split": split, "n_boot": n_boot, "seed": seed,
                           "baselines": ",".join(base), "dataset_path": str(Path(ds.path).resolve())})
        mlflow.log_metrics(evaluation_metrics(scores, split))
        if scores.get("best_baseline"):
            mlflow.set_tag(f"{split}_best_baseline", scores["best_baseline"])
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
        if verdict is not None:
            verdict.log()
        report = {**jsonable(scores), "confusion_matrix": cm.tolist(), "class_names": names,
                  "baseline_confusion_matrices": {
                      n: confusion_matrix(y, p.argmax(axis=1), ds.n_classes).tolist()
                      for n, p in base.items()}}
        report.pop("run_id", None)
        mlflow.log_dict(report, "evaluation.json")
        best = {f"{split}_best_baseline": scores["best_baseline"]} if scores.get("best_baseline") else {}
        headline = evaluation_headline(scores, split)
        headline.pop(f"{split}_macro_f1", None)  # the training run scored the same model itself
        copy_to_training_run(training, ds, headline, best)
        return run.info.run_id
