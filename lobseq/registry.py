"""Model registry: the `champion` alias, promotion decisions, list/promote/rollback.

Promotion rule (`decide`): the challenger replaces the champion only when its
score on the configured metric beats the champion's, on the same dataset and
split, by more than `margin` (and, with `require_ci`, also lies beyond the
champion's bootstrap interval). No champion yet: the challenger is promoted.

Every champion change is remembered in a registered-model tag
(`lobseq.champion_history`, a JSON list of versions) and mirrored in the
alias `previous_champion`, so `rollback` can step back more than once.
The alias is always the last thing written: a run that fails earlier never
moves it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lobseq.errors import LobseqError

CHAMPION = "champion"
PREVIOUS = "previous_champion"
HISTORY_TAG = "lobseq.champion_history"
LOWER_IS_BETTER = ("loss", "brier", "error", "drawdown", "ece")


def client():
    from mlflow import MlflowClient

    return MlflowClient()


@dataclass
class PromotionRule:
    metric: str = "macro_f1"
    margin: float = 0.0
    require_ci: bool = False
    greater_is_better: bool | None = None  # None → from the metric's name

    def better_is_higher(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not any(w in self.metric for w in LOWER_IS_BETTER)


@dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None = None
    champion_ci: tuple[float, float] | None = None
    margin: float = 0.0
    require_ci: bool = False
    challenger: dict = field(default_factory=dict)
    champion: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def ci_of(metrics: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    """The bootstrap interval of `metric` in an evaluation dict, in any of the usual spellings."""
    for lo, hi in ((f"{metric}_ci_low", f"{metric}_ci_high"), (f"{metric}_ci_lo", f"{metric}_ci_hi"),
                   (f"{metric}_lo", f"{metric}_hi"), (f"{metric}_low", f"{metric}_high")):
        if lo in metrics and hi in metrics:
            return float(metrics[lo]), float(metrics[hi])
    for key in (f"{metric}_ci", "ci"):
        value = metrics.get(key)
        if isinstance(value, Mapping):
            value = value.get(metric, value)
            if isinstance(value, Mapping):
                value = (value.get("low", value.get("lo")), value.get("high", value.get("hi")))
        if isinstance(value, Sequence) and len(value) == 2 and None not in value:
            return float(value[0]), float(value[1])
    return None


def score_of(metrics: Mapping[str, Any], metric: str) -> float:
    if metric not in metrics:
        raise LobseqError(f"evaluation has no metric '{metric}' (has {', '.join(sorted(metrics))})",
                          field="metric", fix="choose one of the evaluated metrics")
    value = float(metrics[metric])
    if not math.isfinite(value):
        raise LobseqError(f"metric '{metric}' is {value}", field="metric")
    return value


def decide(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
           rule: PromotionRule) -> Decision:
    """Compare two evaluations of the same split; pure (no MLflow)."""
    chal = score_of(challenger, rule.metric)
    base = dict(metric=rule.metric, challenger_score=chal, margin=rule.margin,
                require_ci=rule.require_ci)
    if champion is None:
        return Decision(True, "no champion yet: the challenger becomes champion", **base)
    champ = score_of(champion, rule.metric)
    ci = ci_of(champion, rule.metric)
    higher = rule.better_is_higher()
    gain = chal - champ if higher else champ - chal
    base.update(champion_score=champ, champion_ci=ci)
    if not gain > rule.margin:
        return Decision(False, f"challenger {rule.metric} {chal:.4f} does not beat champion "
                               f"{champ:.4f} by more than {rule.margin:g}", **base)
    if rule.require_ci:
        if ci is None:
            return Decision(False, f"champion has no bootstrap interval for {rule.metric}; "
                                   "require_ci keeps it", **base)
        beyond = chal > ci[1] if higher else chal < ci[0]
        if not beyond:
            return Decision(False, f"challenger {rule.metric} {chal:.4f} lies inside the champion's "
                                   f"interval [{ci[0]:.4f}, {ci[1]:.4f}]", **base)
    return Decision(True, f"challenger {rule.metric} {chal:.4f} beats champion {champ:.4f} "
                          f"by {gain:.4f} > {rule.margin:g}", **base)


# ------------------------------------------------------------------ aliases


def version_by_alias(name: str, alias: str, c=None):
    from mlflow.exceptions import MlflowException

    c = c or client()
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_version(name: str, c=None) -> str | None:
    mv = version_by_alias(name, CHAMPION, c)
    return str(mv.version) if mv is not None else None


def _history(name: str, c) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        tags = c.get_registered_model(name).tags or {}
    except MlflowException:
        raise LobseqError(f"no registered model named '{name}'", field="name",
                          fix="see `lobseq models list`") from None
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except ValueError:
        return []


def _write_aliases(name: str, history: list[str], c) -> None:
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-50:]))
    if len(history) >= 2:
        c.set_registered_model_alias(name, PREVIOUS, history[-2])
    elif version_by_alias(name, PREVIOUS, c) is not None:
        c.delete_registered_model_alias(name, PREVIOUS)
    # Last: the alias servers load is the final write.
    c.set_registered_model_alias(name, CHAMPION, history[-1])


def promote(name: str, version: str | int, c=None, reason: str = "manual") -> str | None:
    """Make `version` the champion; returns the version it replaced (or None)."""
    c = c or client()
    version = str(version)
    from mlflow.exceptions import MlflowException

    try:
        c.get_model_version(name, version)
    except MlflowException:
        raise LobseqError(f"model '{name}' has no version {version}", field="version",
                          fix="see `lobseq models list`") from None
    current = champion_version(name, c)
    if current == version:
        return current
    history = _history(name, c)
    if current is not None and (not history or history[-1] != current):
        history.append(current)
    history.append(version)
    c.set_model_version_tag(name, version, "lobseq.promoted_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
    c.set_model_version_tag(name, version, "lobseq.promotion_reason", reason[:500])
    _write_aliases(name, history, c)
    return current


def rollback(name: str, c=None) -> tuple[str, str]:
    """Move `champion` back to the previous champion. Returns (from, to)."""
    c = c or client()
    current = champion_version(name, c)
    history = _history(name, c)
    if current is not None and (not history or history[-1] != current):
        history.append(current)
    if len(history) < 2:
        raise LobseqError(f"model '{name}' has no previous champion to roll back to", field="name",
                          fix=f"promote a version by hand: lobseq models promote {name} VERSION")
    history.pop()
    target = history[-1]
    c.set_model_version_tag(name, target, "lobseq.promotion_reason", f"rollback from v{current}")
    _write_aliases(name, history, c)
    return str(current), target


def list_versions(name: str | None = None, c=None) -> list[dict]:
    """One dict per model version: name, version, aliases, run, decision and scores."""
    from mlflow.exceptions import MlflowException

    c = c or client()
    names = [name] if name else [m.name for m in c.search_registered_models()]
    rows = []
    for n in names:
        by_version: dict[str, list[str]] = {}
        try:
            aliases = c.get_registered_model(n).aliases or {}
        except MlflowException:
            raise LobseqError(f"no registered model named '{n}'", field="name",
                              fix="run `lobseq models list` for the registered names") from None
        for alias, v in aliases.items():
            by_version.setdefault(str(v), []).append(alias)
        for mv in c.search_model_versions(f"name='{n}'"):
            tags = mv.tags or {}
            rows.append({
                "name": n, "version": str(mv.version),
                "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                "run_id": mv.run_id or "",
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1000)),
                # The automatic decision, then any later manual promotion or rollback.
                "decision": "; ".join(filter(None, (tags.get("lobseq.decision"),
                                                    tags.get("lobseq.promotion_reason")))),
                "score": tags.get("lobseq.challenger_score", ""),
                "champion_score": tags.get("lobseq.champion_score", ""),
            })
    rows.sort(key=lambda r: (r["name"], int(r["version"])))
    return rows


# ------------------------------------------------------- champion/challenger


def register(model_uri: str, name: str, tags: Mapping[str, str] | None = None) -> str:
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags=dict(tags or {}))
    return str(mv.version)


def champion_challenger(
    name: str,
    challenger_uri: str,
    challenger_metrics: Mapping[str, Any],
    evaluate: Callable[[str], Mapping[str, Any]],
    rule: PromotionRule,
    log: Callable[[str], None] = print,
    on_decision: Callable[[Decision], None] | None = None,
) -> Decision:
    """Register the challenger, score the champion with `evaluate`, move the alias if it wins.

    `evaluate(model_uri)` must score on the same dataset and split the
    challenger's metrics came from. Tags record both scores and the decision
    on the challenger's version (and the comparison on the champion's);
    `on_decision` (e.g. writing the decision artifact) runs before the alias
    moves, so if it fails the champion stays.
    """
    c = client()
    current = champion_version(name, c) if _exists(name, c) else None
    champ_metrics = None
    if current is not None:
        log(f"  evaluating champion {name} v{current} on the same split")
        champ_metrics = dict(evaluate(f"models:/{name}/{current}"))
    decision = decide(challenger_metrics, champ_metrics, rule)
    version = register(challenger_uri, name)
    decision.challenger = {"name": name, "version": version, "model_uri": challenger_uri}
    decision.champion = {"name": name, "version": current} if current else {}
    tags = {"lobseq.decision": "promoted" if decision.promote else "kept_champion",
            "lobseq.decision_reason": decision.reason[:500],
            "lobseq.metric": rule.metric,
            "lobseq.challenger_score": f"{decision.challenger_score:.6g}",
            "lobseq.champion_score": "" if decision.champion_score is None
            else f"{decision.champion_score:.6g}",
            "lobseq.compared_with": current or ""}
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    if current is not None:
        c.set_model_version_tag(name, current, f"lobseq.challenged_by_v{version}",
                                f"{decision.challenger_score:.6g} vs {decision.champion_score:.6g}: "
                                + ("lost" if decision.promote else "held"))
    if on_decision is not None:
        on_decision(decision)
    if decision.promote:
        promote(name, version, c, reason=decision.reason)
    return decision


def _exists(name: str, c) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return True
    except MlflowException:
        return False
