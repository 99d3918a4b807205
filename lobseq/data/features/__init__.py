"""Named, causal, vectorized features of a canonical frame.

A feature is ``fn(frame, **params) -> dict[str, np.ndarray]``: every array has
``len(frame)`` float64 values, NaN during warm-up, and the value at row t reads
rows <= t only. A feature may instead yield ``(name, array)`` pairs one column
at a time (calling the registered ``Feature`` still gives the dict), so that
``compute_features`` holds one float64 column at a time, not all of them. Features are registered by name with
``@register(name, kind="book"|"bars", **defaults)``; the defaults are the only
parameters a spec may set.

``compute_features(frame, specs, kind)`` stacks the columns of the requested
specs into one float32 ``(n, F)`` C-contiguous matrix and returns it with the
column names, which are stable and readable (``depth_imbalance_3``,
``ofi_10``, ``ret_5``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError

KINDS = ("book", "bars")

FeatureFn = Callable[..., Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]]


@dataclass(frozen=True)
class Feature:
    """One registered feature: its function and the parameters it accepts."""

    name: str
    kind: str
    fn: FeatureFn
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def __call__(self, frame: pd.DataFrame, **params: Any) -> dict[str, np.ndarray]:
        return dict(self.columns(frame, **{**self.defaults, **params}))

    def columns(self, frame: pd.DataFrame, **params: Any) -> Iterator[tuple[str, np.ndarray]]:
        """The feature's ``(name, column)`` pairs, computed lazily where the function yields them."""
        out = self.fn(frame, **params)
        return iter(out.items()) if isinstance(out, Mapping) else iter(out)


FEATURES: dict[str, Feature] = {}


def register(name: str, *, kind: str, **defaults: Any) -> Callable[[FeatureFn], FeatureFn]:
    """Register ``fn`` as feature ``name``; ``defaults`` are its parameters."""
    if kind not in KINDS:
        raise ValueError(f"feature kind must be one of {KINDS}, got {kind!r}")

    def decorate(fn: FeatureFn) -> FeatureFn:
        if name in FEATURES:
            raise ValueError(f"feature {name!r} is registered twice")
        accepted = [p for p in inspect.signature(fn).parameters][1:]
        # A default the function does not take (or the reverse) is a bug in the feature.
        if sorted(accepted) != sorted(defaults):
            raise ValueError(
                f"feature {name!r}: parameters {accepted} do not match defaults {sorted(defaults)}"
            )
        FEATURES[name] = Feature(name=name, kind=kind, fn=fn, defaults=dict(defaults))
        return fn

    return decorate


def available_features(kind: str | None = None) -> list[str]:
    """Registered feature names, optionally only those of one kind, sorted."""
    if kind is not None:
        _check_kind(kind)
    return sorted(n for n, f in FEATURES.items() if kind is None or f.kind == kind)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise LobseqError(
            f"unknown data kind {kind!r}",
            field="kind",
            fix=f"use one of: {', '.join(KINDS)}",
        )


def resolve_spec(spec: str | Mapping[str, Any], kind: str) -> tuple[Feature, dict[str, Any]]:
    """Turn a spec (a name or ``{"name": ..., **params}``) into a feature and full params."""
    _check_kind(kind)
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        if "name" not in spec:
            raise LobseqError(
                f"feature spec {dict(spec)!r} has no 'name'",
                field="features",
                fix=f"write {{'name': <feature>, ...}}; features for {kind}: "
                + ", ".join(available_features(kind)),
            )
        name = spec["name"]
        params = {k: v for k, v in spec.items() if k != "name"}
    else:
        raise LobseqError(
            f"feature spec must be a name or a mapping, got {type(spec).__name__}",
            field="features",
        )
    valid = available_features(kind)
    feature = FEATURES.get(name) if isinstance(name, str) else None
    if feature is None:
        raise LobseqError(
            f"unknown feature {name!r}",
            field="features",
            fix=f"features for {kind} data: {', '.join(valid)}",
        )
    if feature.kind != kind:
        raise LobseqError(
            f"feature {name!r} is for {feature.kind} data, not {kind}",
            field="features",
            fix=f"features for {kind} data: {', '.join(valid)}",
        )
    unknown = sorted(set(params) - set(feature.defaults))
    if unknown:
        accepted = ", ".join(sorted(feature.defaults)) or "none"
        raise LobseqError(
            f"feature {name!r} has no parameter(s) {', '.join(map(repr, unknown))}",
            field="features",
            fix=f"parameters of {name!r}: {accepted}",
        )
    return feature, {**feature.defaults, **params}


def compute_features(
    frame: pd.DataFrame,
    specs: Iterable[str | Mapping[str, Any]],
    kind: str,
    *,
    names: list[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Compute ``specs`` on one segment's frame.

    Returns ``(X, names)``: ``X`` is float32 ``(len(frame), F)``, C-contiguous,
    column j named ``names[j]``; NaN where a feature is warming up or undefined.
    ``names``: the columns these specs are known to make (a packaged model's
    stored names); skips the two-row probe, and a frame that makes other
    columns (other book levels) is a ``LobseqError``.
    """
    resolved = [resolve_spec(spec, kind) for spec in specs]
    if not resolved:
        raise LobseqError(
            "no features requested",
            field="features",
            fix=f"list at least one of: {', '.join(available_features(kind))}",
        )
    n = len(frame)
    known = names is not None
    if known:
        names = list(names)
    else:
        names = _column_names(frame.iloc[: min(n, 2)], resolved)
    out = np.empty((n, len(names)), dtype=np.float32)
    j = 0
    for feature, params in resolved:
        for col, values in feature.columns(frame, **params):
            values = np.asarray(values)
            if values.shape != (n,):
                raise RuntimeError(
                    f"feature {feature.name!r} column {col!r} has shape {values.shape}, "
                    f"expected ({n},)"
                )
            if known and (j >= len(names) or col != names[j]):
                raise _names_differ(names, j, col)
            if j >= len(names) or col != names[j]:
                raise RuntimeError(
                    f"feature {feature.name!r} made column {col!r} where a two-row frame "
                    f"made {names[j] if j < len(names) else 'none'!r}: names must not depend on data"
                )
            out[:, j] = values  # cast to float32 on assignment
            j += 1
            del values
    if j != len(names):
        if known:
            raise _names_differ(names, j, None)
        raise RuntimeError(f"features made {j} columns on the frame but {len(names)} on two rows")
    return out, names


def _column_names(probe: pd.DataFrame, resolved: list[tuple[Feature, dict[str, Any]]]) -> list[str]:
    # Column names do not depend on the data, so a two-row run finds them and
    # the (n, F) matrix is allocated once; each column is then written into it
    # as it is made (no list of columns beside the matrix, one float64 column
    # alive at a time for features that yield).
    names: list[str] = []
    for feature, params in resolved:
        for col, _values in feature.columns(probe, **params):
            if col in names:
                raise LobseqError(
                    f"feature column {col!r} is produced twice",
                    field="features",
                    fix=f"request {feature.name!r} once (merge its parameters into one spec)",
                )
            names.append(col)
    return names


class FeatureNamesDiffer(LobseqError):
    """The frame makes other feature columns than the ``names`` given to ``compute_features``."""


def _names_differ(names: list[str], j: int, col: str | None) -> LobseqError:
    expected = names[j] if j < len(names) else "no more columns"
    got = col if col is not None else "no more columns"
    return FeatureNamesDiffer(
        f"the frame's feature column {j + 1} is {got!r} where {expected!r} was expected "
        "(other book levels or columns than the model's?)",
        field="columns",
    )


def check_lags(value: Any, feature: str, param: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Validate a window/lag parameter: one int or a list of ints >= ``minimum``."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = bool(items) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum
        for v in items
    )
    if not ok:
        raise LobseqError(
            f"feature {feature!r}: {param} must be integer(s) >= {minimum}, got {value!r}",
            field=param,
        )
    return tuple(dict.fromkeys(int(v) for v in items))


def require_columns(frame: pd.DataFrame, columns: Iterable[str], feature: str) -> None:
    """Raise a LobseqError naming the feature if ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LobseqError(
            f"feature {feature!r} needs column(s) {', '.join(missing)}",
            field="columns",
            fix="pass a canonical frame of the right kind (see lobseq.sources)",
        )


def default_features(kind: str, levels: int, *, messages: bool = False) -> list[dict[str, Any]]:
    """The default spec list for ``kind`` data with ``levels`` book levels.

    Book defaults are stationary (relative to mid), so they can be pooled
    across days and instruments; raw prices (``book``, ``mid``) are opt-in.
    ``messages=True`` (LOBSTER) adds Dixon's order-flow ratios, which need
    the message columns. ``levels`` is ignored for bars.
    """
    _check_kind(kind)
    if kind == "bars":
        return [
            {"name": "log_returns"},
            {"name": "range"},
            {"name": "volume_z"},
            {"name": "close_location"},
            {"name": "rolling_vol"},
        ]
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise LobseqError(
            f"levels must be a positive integer, got {levels!r}", field="levels"
        )
    specs: list[dict[str, Any]] = [
        {"name": "levels_rel", "levels": int(levels)},
        {"name": "spread"},
        {"name": "depth_imbalance", "levels": int(levels)},
        {"name": "ofi"},
        {"name": "returns"},
        {"name": "realized_vol"},
    ]
    if messages:
        specs.append({"name": "dixon_ofr"})
    return specs


def mid_price(frame: pd.DataFrame) -> np.ndarray:
    """The price labels and the backtest use, float64 dollars.

    Book frames: ``(ask_price_1 + bid_price_1) / 2``, NaN when a side is empty.
    Bars: ``adj_close``.
    """
    if "ask_price_1" in frame.columns and "bid_price_1" in frame.columns:
        ask = frame["ask_price_1"].to_numpy(dtype=np.float64)
        bid = frame["bid_price_1"].to_numpy(dtype=np.float64)
        return (ask + bid) / 2.0
    if "adj_close" in frame.columns:
        return frame["adj_close"].to_numpy(dtype=np.float64).copy()
    raise LobseqError(
        "frame has neither a book (ask_price_1, bid_price_1) nor bars (adj_close)",
        field="columns",
        fix="pass a canonical frame from lobseq.sources",
    )


# The feature modules register themselves on import; they need `register` above.
from lobseq.data.features import bars, book  # noqa: E402, F401

__all__ = [
    "FEATURES",
    "KINDS",
    "Feature",
    "FeatureNamesDiffer",
    "available_features",
    "check_lags",
    "compute_features",
    "default_features",
    "mid_price",
    "register",
    "require_columns",
    "resolve_spec",
]
