"""A verdict in plain words: did the model beat what it must beat?

One line, shown by ``evaluate``, ``backtest``, ``walkforward`` and the pipeline summary,
and put on each MLflow run as the tag ``lobseq.verdict`` plus a ``verdict.md`` artifact:

* **which figure decided**: macro-F1 when there are classification scores (its paired
  block-bootstrap difference to the best baseline), else the Sharpe ratio after costs
  (its paired block-bootstrap difference to the best trading baseline, buy-and-hold
  included);
* **the outcome**: the model *beats* the best baseline beyond the 95% interval of the
  difference (lower bound > 0), is *worse* beyond it (upper bound < 0), or is *within*
  it (the interval holds 0: no evidence either way);
* its **accuracy next to the majority rate** (always predicting the training majority);
* its **Sharpe after costs next to buy-and-hold's**, with the cost convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

OUTCOMES = ("beats", "within", "worse")
_PHRASE = {"beats": "beats", "within": "is within the interval of", "worse": "is worse than"}


@dataclass(frozen=True)
class Verdict:
    line: str
    outcome: str  # beats | within | worse | n/a
    decided_by: str  # macro_f1 | sharpe

    def markdown(self) -> str:
        return f"# Verdict\n\n**{self.outcome}** (decided by {self.decided_by})\n\n{self.line}\n"

    def log(self) -> None:
        """Into the active MLflow run: the tag `lobseq.verdict` and `verdict.md`."""
        import mlflow

        mlflow.set_tag("lobseq.verdict", self.line[:5000])
        mlflow.set_tag("lobseq.verdict_outcome", self.outcome)
        mlflow.log_text(self.markdown(), "verdict.md")


def _num(d: Mapping[str, Any] | None, key: str) -> float | None:
    v = (d or {}).get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def outcome_of(lo: float | None, hi: float | None) -> str:
    """beats (lo > 0), worse (hi < 0), within (the interval holds 0), n/a without one."""
    if lo is None or hi is None:
        return "n/a"
    return "beats" if lo > 0 else "worse" if hi < 0 else "within"


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def accuracy_part(scores: Mapping[str, Any], prefix: str = "") -> str:
    acc, maj = _num(scores, f"{prefix}accuracy"), _num(scores, f"{prefix}majority_rate")
    if maj is None:
        maj = _num(scores, f"{prefix}baseline_prior_accuracy")
    cls = scores.get(f"{prefix}majority_class")
    return (f"accuracy {_fmt(acc, '.3f')} vs majority rate {_fmt(maj, '.3f')}"
            + (f" (always '{cls}')" if cls else ""))


def classification_part(scores: Mapping[str, Any], prefix: str = "") -> tuple[str, str]:
    """(outcome, text) of macro-F1 against the best baseline."""
    best = scores.get(f"{prefix}best_baseline")
    if not best:
        return "n/a", "no baseline scored"
    lo = _num(scores, f"{prefix}diff_macro_f1_vs_best_ci_low")
    hi = _num(scores, f"{prefix}diff_macro_f1_vs_best_ci_high")
    out = outcome_of(lo, hi)
    d = _num(scores, f"{prefix}diff_macro_f1_vs_best")
    text = (f"macro-F1 decided: the model ({_fmt(_num(scores, f'{prefix}macro_f1'))}) "
            f"{_PHRASE.get(out, 'has no interval against')} the best baseline, {best} "
            f"({_fmt(_num(scores, f'{prefix}baseline_{best}_macro_f1'))}): difference "
            f"{_fmt(d, '+.4f')} [{_fmt(lo, '+.4f')}, {_fmt(hi, '+.4f')}]")
    return out, text


def trading_part(bt: Mapping[str, Any] | None, prefix: str = "") -> str:
    """The model's Sharpe after costs next to buy-and-hold's, with the cost convention."""
    if not bt:
        return "Sharpe after costs: not backtested here"
    s, bh = _num(bt, f"{prefix}model_sharpe"), _num(bt, f"{prefix}buy_and_hold_sharpe")
    costs = bt.get(f"{prefix}costs") or ""
    return (f"Sharpe after costs {_fmt(s, '.2f')} vs buy-and-hold {_fmt(bh, '.2f')}"
            + (f" ({costs})" if costs else ""))


def verdict(scores: Mapping[str, Any] | None = None, backtest: Mapping[str, Any] | None = None,
            *, scores_prefix: str = "", backtest_prefix: str = "") -> Verdict:
    """The verdict from evaluation scores and/or backtest figures (flat dicts as returned by
    `evaluate_model` / `backtest_model`, or a walk-forward's with prefixes `oos_` / `bt_`)."""
    if scores:
        out, text = classification_part(scores, scores_prefix)
        parts = [text, accuracy_part(scores, scores_prefix), trading_part(backtest, backtest_prefix)]
        return Verdict("; ".join(parts), out, "macro_f1")
    return trading_verdict(backtest or {}, backtest_prefix)


def trading_verdict(bt: Mapping[str, Any], prefix: str = "") -> Verdict:
    """Decided by the Sharpe ratio after costs against the best trading baseline."""
    best = bt.get(f"{prefix}best_trading_baseline")
    lo = _num(bt, f"{prefix}diff_sharpe_vs_best_ci_low")
    hi = _num(bt, f"{prefix}diff_sharpe_vs_best_ci_high")
    out = outcome_of(lo, hi) if best else "n/a"
    head = (f"Sharpe after costs decided: the model ({_fmt(_num(bt, f'{prefix}model_sharpe'), '.2f')})"
            f" {_PHRASE.get(out, 'has no interval against')} the best trading baseline, {best} "
            f"({_fmt(_num(bt, f'{prefix}{best}_sharpe'), '.2f')}): difference "
            f"{_fmt(_num(bt, f'{prefix}diff_sharpe_vs_best'), '+.2f')} "
            f"[{_fmt(lo, '+.2f')}, {_fmt(hi, '+.2f')}]")
    return Verdict(f"{head}; {trading_part(bt, prefix)}", out, "sharpe")


def sharpe_difference(ra, rb, periods_per_year: float, *, n_boot: int = 1000, seed: int = 0
                      ) -> dict[str, float]:
    """Sharpe(a) - Sharpe(b) of two return series over the same periods, with a paired
    circular block-bootstrap 95% interval (block = ceil(n^(1/3)))."""
    from lobseq.metrics import circular_block_indices, default_block

    a, b = np.asarray(ra, dtype=np.float64), np.asarray(rb, dtype=np.float64)
    if a.size < 3 or a.shape != b.shape:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan")}
    idx = circular_block_indices(a.size, default_block(a.size), n_boot, np.random.default_rng(seed))

    def sharpe(x: np.ndarray) -> np.ndarray:
        sd = x.std(axis=-1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(sd > 0, x.mean(axis=-1) / sd, 0.0)
        return s * np.sqrt(periods_per_year)

    boot = sharpe(a[idx]) - sharpe(b[idx])
    return {"diff": float(sharpe(a) - sharpe(b)), "lo": float(np.percentile(boot, 2.5)),
            "hi": float(np.percentile(boot, 97.5))}


def add_sharpe_comparison(out: dict, results: Mapping[str, Any], periods_per_year: float,
                          lead: str = "model") -> None:
    """Add `best_trading_baseline` and `diff_sharpe_vs_best[_ci_low|_ci_high]` to `out`."""
    others = [w for w in results if w != lead and np.isfinite(results[w].metrics["sharpe"])]
    if lead not in results or not others:
        return
    best = max(others, key=lambda w: results[w].metrics["sharpe"])
    d = sharpe_difference(results[lead].period_pnl, results[best].period_pnl, periods_per_year)
    out.update(best_trading_baseline=best, diff_sharpe_vs_best=d["diff"],
               diff_sharpe_vs_best_ci_low=d["lo"], diff_sharpe_vs_best_ci_high=d["hi"])


def majority_rate(ds, split: str = "test") -> tuple[str, float]:
    """(name of the training windows' majority class, its share of `split`'s windows)."""
    from lobseq.data.labels import class_names

    train = np.asarray(ds.labels[ds.ends["train"]], dtype=np.int64)
    y = np.asarray(ds.labels[ds.ends[split]], dtype=np.int64)
    k = int(np.bincount(train, minlength=ds.n_classes).argmax()) if train.size else 0
    return class_names(ds.n_classes)[k], float((y == k).mean()) if y.size else float("nan")


def model_class_weight(model) -> str:
    """The class weighting the model was trained with (`train.class_weight` of its run)."""
    if not getattr(model, "run_id", None):
        return "none"
    try:
        import mlflow

        return mlflow.get_run(model.run_id).data.params.get("train.class_weight") or "none"
    except Exception:  # noqa: BLE001 - a model without a reachable run: no weighting known
        return "none"
