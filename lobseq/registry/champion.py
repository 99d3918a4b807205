"""Champion/challenger: the promotion rule, its decision, and registering a challenger.

The gate (``PromotionRule.gate = "baselines"``, the default): a challenger is promoted
only if it beats the best baseline of its own evaluation on the promotion metric by more
than ``margin`` (with ``require_ci``, also beyond the interval: the paired difference's
interval lies above 0, or, without one, above the baseline's own interval), optionally
(``require_trading``) beats buy-and-hold's Sharpe after costs in its backtest, AND beats
the current champion as before. The gate holds on the first run too: "no champion yet"
crowns nobody who loses to a baseline. ``gate = "none"`` compares with the champion only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import Field, StrictBool

from lobseq.config import fields_of, stage_config
from lobseq.errors import LobseqError
from lobseq.registry.aliases import champion_version, client, promote, registry_lock

LOWER_IS_BETTER = ("loss", "brier", "error", "drawdown", "ece")
GATES = ("baselines", "none")


@stage_config
class PromotionRule:
    """When a challenger replaces the champion (`decide`)."""

    metric: str = Field("macro_f1", description="Evaluation metric the challenger must win on.")
    margin: float = Field(0.0, description="The challenger must beat the champion by more than "
                                           "this.")
    require_ci: StrictBool = Field(False, description="... and score beyond the champion's "
                                                      "bootstrap interval.")
    greater_is_better: StrictBool | None = Field(
        None, description="Direction of the metric [default: from its name; loss, brier, error, "
                          "drawdown, ece: lower is better].")
    gate: Literal["baselines", "none"] = Field(
        "baselines", description="baselines: the challenger must first beat the best baseline "
                                 "on the metric (by the margin; beyond its interval with "
                                 "require_ci), also on the first run; none: no gate.")
    require_trading: StrictBool = Field(
        False, description="... and also beat buy-and-hold's Sharpe after costs (needs an "
                           "upstream backtest).")

    def better_is_higher(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not any(w in self.metric for w in LOWER_IS_BETTER)


@stage_config
class PromoteConfig(PromotionRule):
    """The champion/challenger stage: the rule, the registered model, and the split compared on."""

    model_name: str = Field(description="Registered model whose @champion alias the stage moves.")
    split: Literal["train", "val", "test"] = Field(
        "test", description="Split the challenger and the champion are both scored on.")

    def rule(self) -> PromotionRule:
        return PromotionRule(**{k: getattr(self, k) for k in fields_of(PromotionRule)})


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
    gate: dict = field(default_factory=dict)  # the baseline gate's figures and outcome

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


def _best_baseline(metrics: Mapping[str, Any], rule: PromotionRule) -> tuple[str, float] | None:
    suffix = f"_{rule.metric}"
    scores = {k[len("baseline_"):-len(suffix)]: float(v) for k, v in metrics.items()
              if k.startswith("baseline_") and k.endswith(suffix) and isinstance(v, (int, float))
              and not isinstance(v, bool) and math.isfinite(v)}
    if not scores:
        return None
    pick = max if rule.better_is_higher() else min
    name = pick(scores, key=scores.get)
    return name, scores[name]


def _beyond_baseline_interval(metrics: Mapping[str, Any], rule: PromotionRule, name: str,
                              chal: float) -> tuple[float, float] | None:
    """None when the challenger clears the interval, else the interval it did not clear."""
    higher = rule.better_is_higher()
    diff = ci_of(metrics, f"diff_{rule.metric}_vs_{name}")
    if diff is not None:  # paired: model - baseline on the same resampled rows
        return None if (diff[0] > 0 if higher else diff[1] < 0) else diff
    own = ci_of(metrics, f"baseline_{name}_{rule.metric}")
    if own is None:
        return (math.nan, math.nan)
    return None if (chal > own[1] if higher else chal < own[0]) else own


def gate_check(challenger: Mapping[str, Any], rule: PromotionRule) -> tuple[bool, str, dict]:
    """(passed, reason, figures): the challenger against the best baseline (and buy-and-hold)."""
    if rule.gate not in GATES:
        raise LobseqError(f"unknown gate {rule.gate!r}", field="gate",
                          fix=f"use one of {', '.join(GATES)}")
    if rule.gate == "none":
        return True, "", {"gate": "none"}
    chal = score_of(challenger, rule.metric)
    best = _best_baseline(challenger, rule)
    if best is None:
        return False, (f"the evaluation has no baseline {rule.metric} to gate on (set gate: none "
                       "to compare with the champion only)"), {"gate": rule.gate}
    name, score = best
    gain = chal - score if rule.better_is_higher() else score - chal
    figures = {"gate": rule.gate, "best_baseline": name, "baseline_score": score, "gain": gain}
    if not gain > rule.margin:
        return False, (f"challenger {rule.metric} {chal:.4f} does not beat the best baseline, "
                       f"{name} {score:.4f}, by more than {rule.margin:g}"), figures
    if rule.require_ci:
        ci = _beyond_baseline_interval(challenger, rule, name, chal)
        if ci is not None:
            return False, (f"challenger {rule.metric} {chal:.4f} beats {name} {score:.4f} but not "
                           f"beyond the interval [{ci[0]:+.4f}, {ci[1]:+.4f}] (require_ci)"), figures
    if rule.require_trading:
        sharpe, bh = challenger.get("model_sharpe"), challenger.get("buy_and_hold_sharpe")
        figures.update(model_sharpe=sharpe, buy_and_hold_sharpe=bh)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (sharpe, bh)):
            return False, ("require_trading needs the challenger's backtest Sharpe and "
                           "buy-and-hold's (add a backtest stage upstream)"), figures
        if not sharpe > bh:
            return False, (f"challenger Sharpe after costs {sharpe:.2f} does not beat "
                           f"buy-and-hold's {bh:.2f} (require_trading)"), figures
    # Without require_ci the gate compares point estimates: say so, since the verdict beside it
    # may call the same difference "within the interval".
    how = "beyond its interval" if rule.require_ci else "on the point estimate (require_ci: false)"
    return True, (f"beats the best baseline {name} {score:.4f} by {gain:.4f}, {how}"
                  + (", and buy-and-hold's Sharpe" if rule.require_trading else "")), figures


def decide(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None,
           rule: PromotionRule) -> Decision:
    """Gate the challenger, then compare two evaluations of the same split; pure (no MLflow)."""
    chal = score_of(challenger, rule.metric)
    passed, why, figures = gate_check(challenger, rule)
    base = dict(metric=rule.metric, challenger_score=chal, margin=rule.margin,
                require_ci=rule.require_ci, gate={**figures, "passed": passed})
    if not passed:
        return Decision(False, why, **base)
    if champion is None:
        return Decision(True, "no champion yet: the challenger becomes champion"
                        + (f" ({why})" if why else ""), **base)
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


def register(model_uri: str, name: str, tags: Mapping[str, str] | None = None,
             description: str | None = None) -> str:
    """Register `model_uri` as a new version of `name` carrying `tags` (created in one call);
    returns the version. The version's description (default: architecture, dataset and scores
    of the training run) shows in the UI; it is written after, so it is the one part a failure
    in between can leave out."""
    import mlflow

    from lobseq.tracking.describe import describe_logged_model

    mv = mlflow.register_model(model_uri, name, tags=dict(tags or {}))
    description = description if description is not None else describe_logged_model(model_uri)
    if description:
        mlflow.MlflowClient().update_model_version(name, mv.version, description=description)
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
    with registry_lock(name):  # from reading the champion to moving the alias: one change at a time
        return _champion_challenger(name, challenger_uri, challenger_metrics, evaluate, rule, log,
                                    on_decision)


def _champion_challenger(name, challenger_uri, challenger_metrics, evaluate, rule, log,
                         on_decision) -> Decision:
    c = client()
    current = champion_version(name, c) if _exists(name, c) else None
    champ_metrics = None
    if current is not None and gate_check(challenger_metrics, rule)[0]:
        log(f"  evaluating champion {name} v{current} on the same split")
        champ_metrics = dict(evaluate(f"models:/{name}/{current}"))
    decision = decide(challenger_metrics, champ_metrics, rule)  # the gate decides first
    outcome = ("promoted" if decision.promote else "kept_champion"
               if decision.gate.get("passed", True) else "below_baseline")
    tags = {"lobseq.decision": outcome,
            "lobseq.decision_reason": decision.reason[:500],
            "lobseq.metric": rule.metric,
            "lobseq.challenger_score": f"{decision.challenger_score:.6g}",
            "lobseq.champion_score": "" if decision.champion_score is None
            else f"{decision.champion_score:.6g}",
            "lobseq.compared_with": current or ""}
    # One call creates the version WITH its decision tags: no version without its decision,
    # whatever fails next (a server that goes away, on_decision); the alias moves last.
    version = register(challenger_uri, name, tags=tags)
    decision.challenger = {"name": name, "version": version, "model_uri": challenger_uri}
    decision.champion = {"name": name, "version": current} if current else {}
    if current is not None and decision.champion_score is not None:
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
