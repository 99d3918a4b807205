"""A few readable lines about a training run: the description of a registered model version."""

from __future__ import annotations

MODEL_PARAM_SKIP = ("model.name", "model.preset")


def _f(v, fmt: str = ".4f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _scores(split: str, m: dict, tags: dict) -> str | None:
    f1 = m.get(f"{split}_macro_f1")
    if f1 is None:
        return None
    text = f"{split}: macro-F1 {_f(f1)}"
    lo, hi = m.get(f"{split}_macro_f1_ci_low"), m.get(f"{split}_macro_f1_ci_high")
    if lo is not None and hi is not None:
        text += f" [{_f(lo)}, {_f(hi)}]"
    best = tags.get(f"{split}_best_baseline")
    if best and f"{split}_best_baseline_macro_f1" in m:
        text += f" · best baseline ({best}) {_f(m[f'{split}_best_baseline_macro_f1'])}"
    diff = m.get(f"{split}_diff_macro_f1_vs_best")
    if diff is not None:
        text += f" · model − best baseline {_f(diff, '+.4f')}"
        lo, hi = m.get(f"{split}_diff_macro_f1_vs_best_ci_low"), m.get(f"{split}_diff_macro_f1_vs_best_ci_high")
        if lo is not None and hi is not None:
            text += f" [{_f(lo, '+.4f')}, {_f(hi, '+.4f')}]"
    ret = m.get(f"{split}_bt_model_total_return")
    if ret is not None:
        text += f" · backtest total return {_f(ret, '+.4f')}"
    return text


def describe_training_run(run, with_run_id: bool = True) -> str:
    """Markdown: architecture and hyperparameters, dataset, epochs, and val/test scores
    (with the evaluation's interval and best baseline once an evaluation logged them)."""
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    model = p.get("model.name") or t.get("model", "?")
    if p.get("model.preset") not in (None, "", "null", "None"):
        model += f" (preset {p['model.preset']})"
    hyper = ", ".join(f"{k[len('model.'):]}={v}" for k, v in sorted(p.items())
                      if k.startswith("model.") and k not in MODEL_PARAM_SKIP)
    data = " · ".join(f"{k} {p[f'data.{k}']}" for k in ("window", "horizon", "n_classes")
                      if f"data.{k}" in p)
    lines = [f"**{model}** trained on **{t.get('dataset', '?')}** "
             f"(dataset {t.get('dataset_hash', '')[:12]})" + (f" · {data}" if data else "")]
    if hyper:
        lines.append(f"Hyperparameters: {hyper}")
    if "epochs_run" in m:
        lines.append(f"Epochs: {int(m['epochs_run'])} (best {int(m.get('best_epoch', 0))})")
    lines += [s for s in (_scores("test", m, t), _scores("val", m, t)) if s]
    if with_run_id:
        lines.append(f"Training run: {run.info.run_id}")
    return "  \n".join(lines)  # markdown line breaks


def training_run_id(model_uri: str) -> str | None:
    """The run that logged the model behind `runs:/ID/...`, `models:/m-...`, `models:/NAME/V`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        if model_uri.startswith("runs:/"):
            return model_uri[len("runs:/"):].split("/")[0]
        ref = model_uri[len("models:/"):] if model_uri.startswith("models:/") else ""
        if ref.startswith("m-"):
            return client.get_logged_model(ref.split("/")[0]).source_run_id
        name, _, version = ref.partition("/")
        if name and version.isdigit():
            return client.get_model_version(name, version).run_id
    except MlflowException:
        return None
    return None


def describe_logged_model(model_uri: str) -> str | None:
    """`describe_training_run` of the run that logged `model_uri`, or None when unknown."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = training_run_id(model_uri)
    if not run_id:
        return None
    try:
        return describe_training_run(mlflow.MlflowClient().get_run(run_id))
    except MlflowException:
        return None
