"""Evaluation figures: confusion matrix, reliability, equity/drawdown, learning curves.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no
pyplot, no global state, no display needed). Each function returns the
Figure; with ``path`` it also writes a PNG atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lobseq.errors import LobseqError
from lobseq.io import atomic_file


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_png(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` as PNG to `path` atomically (temp file + rename)."""
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)


def _done(fig: Figure, path) -> Figure:
    if path is not None:
        save_png(fig, path)
    return fig


def plot_confusion_matrix(cm, class_names, path: str | Path | None = None,
                          title: str = "Confusion matrix") -> Figure:
    """Rows true, columns predicted; cells coloured by row share, labelled count and %."""
    cm = np.asarray(cm, dtype=np.float64)
    k = len(class_names)
    if cm.shape != (k, k):
        raise LobseqError(f"cm shape {cm.shape} does not match {k} class names", field="cm")
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = _figure(1.4 * k + 2, 1.2 * k + 1.5)
    ax = ax[0, 0]
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(k), class_names)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="share of true class")
    return _done(fig, path)


def reliability_table(y, proba, n_bins: int = 10, mode: str = "top"
                      ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per curve: (name, mean predicted probability, observed frequency, count) per
    non-empty equal-width bin. ``top``: P(predicted class) vs accuracy;
    ``one_vs_rest``: P(class k) vs frequency of class k, one curve per class."""
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise LobseqError(f"proba must be (n, K) with n = {y.size}, got {p.shape}",
                          field="proba")
    if mode == "top":
        pairs = [("predicted class", p.max(axis=1), p.argmax(axis=1) == y)]
    elif mode == "one_vs_rest":
        pairs = [(f"class {c}", p[:, c], y == c) for c in range(p.shape[1])]
    else:
        raise LobseqError(f"mode must be 'top' or 'one_vs_rest', got {mode!r}", field="mode")
    out = []
    for name, conf, hit in pairs:
        b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
        count = np.bincount(b, minlength=n_bins)
        mean_p = np.bincount(b, weights=conf, minlength=n_bins)
        freq = np.bincount(b, weights=hit.astype(float), minlength=n_bins)
        keep = count > 0
        out.append((name, mean_p[keep] / count[keep], freq[keep] / count[keep], count[keep]))
    return out


def plot_reliability(y, proba, path: str | Path | None = None, n_bins: int = 10,
                     mode: str = "top", class_names=None) -> Figure:
    """Reliability diagram (calibration) with a histogram of predicted probabilities."""
    curves = reliability_table(y, proba, n_bins, mode)
    if class_names is not None and mode == "one_vs_rest":
        curves = [(str(n), *c[1:]) for n, c in zip(class_names, curves, strict=True)]
    fig, axes = _figure(5.5, 6, nrows=2, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax, hist = axes[0, 0], axes[1, 0]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for name, mp, freq, count in curves:
        ax.plot(mp, freq, marker="o", label=name)
        hist.bar(mp, count, width=0.8 / n_bins, alpha=0.5)
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Reliability" + (" (P of predicted class)" if mode == "top" else ""))
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("rows")
    return _done(fig, path)


def plot_equity(equity, drawdown, path: str | Path | None = None, benchmark=None,
                x=None, title: str = "Equity") -> Figure:
    """Equity curve over drawdown. `benchmark`: an equity array or {name: array}."""
    equity = np.asarray(equity, dtype=np.float64)
    drawdown = np.asarray(drawdown, dtype=np.float64)
    if equity.shape != drawdown.shape:
        raise LobseqError("equity and drawdown lengths differ", field="drawdown")
    x = np.arange(equity.size) if x is None else np.asarray(x)
    if benchmark is not None and not isinstance(benchmark, dict):
        benchmark = {"benchmark": benchmark}
    fig, axes = _figure(8, 5, nrows=2, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax, dd = axes[0, 0], axes[1, 0]
    ax.plot(x, equity, label="strategy", lw=1.2)
    for name, b in (benchmark or {}).items():
        ax.plot(x, np.asarray(b, dtype=np.float64), label=name, lw=1, alpha=0.8)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    dd.fill_between(x, drawdown, 0, color="tab:red", alpha=0.4)
    dd.set_ylabel("drawdown")
    dd.set_xlabel("row")
    return _done(fig, path)


def plot_learning_curves(history: dict, path: str | Path | None = None) -> Figure:
    """One panel per metric in a Keras-style history dict, `x` and `val_x` together."""
    if not history:
        raise LobseqError("history is empty", field="history")
    names = [k for k in history if not k.startswith("val_")]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history]
    fig, axes = _figure(4.5 * len(names), 3.5, ncols=len(names))
    for ax, name in zip(axes[0], names, strict=True):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if key in history:
                v = np.asarray(history[key], dtype=np.float64)
                ax.plot(np.arange(1, v.size + 1), v, marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    return _done(fig, path)


def plot_trials(values: dict[str, list], scores: list, metric: str, path: str | Path | None = None,
                completed: list[bool] | None = None, best: int | None = None,
                log_x: set[str] | frozenset[str] = frozenset()) -> Figure:
    """A sweep: one scatter per hyperparameter, its value against the trial's score.

    `values[name][i]` is trial i's value (numbers on their axis, anything else as a
    category); `completed[i]` False draws a hollow marker (stopped early); `best` is
    ringed; names in `log_x` get a log axis.
    """
    names = list(values)
    if not names:
        raise LobseqError("no hyperparameters to plot", field="values")
    n = len(scores)
    done = np.asarray(completed if completed is not None else [True] * n, dtype=bool)
    y = np.asarray([np.nan if s is None else s for s in scores], dtype=np.float64)
    fig, axes = _figure(3.2 * len(names), 3.0, ncols=len(names), sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        column = values[name]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column)
        if numeric:
            x = np.asarray(column, dtype=np.float64)
        else:
            cats = list(dict.fromkeys(map(str, column)))
            x = np.asarray([cats.index(str(v)) for v in column], dtype=np.float64)
            ax.set_xticks(range(len(cats)), cats)
        ax.scatter(x[done], y[done], color="tab:blue", label="completed")
        if (~done).any():
            ax.scatter(x[~done], y[~done], facecolors="none", edgecolors="tab:gray", label="stopped")
        if best is not None:
            ax.scatter([x[best]], [y[best]], s=160, facecolors="none", edgecolors="tab:red",
                       linewidths=2, label="best")
        if name in log_x and numeric:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(loc="best", fontsize="small")
    fig.suptitle(f"{n} trials: {metric} by hyperparameter")
    return _done(fig, path)
