import pytest

from lobseq import registry
from lobseq.errors import LobseqError
from lobseq.registry import PromotionRule, decide

# ------------------------------------------------------------ the rule (pure)


def _c(score, baseline=0.2, **more):
    """A challenger's evaluation: its score and its best baseline's."""
    return {"macro_f1": score, "baseline_prior_macro_f1": baseline, **more}


def test_first_run_without_champion_promotes_a_challenger_that_beats_the_baselines():
    assert decide(_c(0.3), None, PromotionRule()).promote


def test_first_run_does_not_crown_a_challenger_that_loses_to_a_baseline():
    d = decide(_c(0.40, 0.45), None, PromotionRule())
    assert not d.promote and "best baseline, prior 0.4500" in d.reason
    assert d.gate["passed"] is False and d.gate["best_baseline"] == "prior"


def test_the_best_baseline_is_the_one_to_beat():
    d = decide(_c(0.40, baseline_gbt_macro_f1=0.41), None, PromotionRule())
    assert not d.promote and "gbt" in d.reason


def test_beating_the_baseline_within_the_margin_is_not_enough():
    assert not decide(_c(0.41, 0.40), None, PromotionRule(margin=0.02)).promote


def test_require_ci_needs_the_paired_difference_above_zero():
    inside = _c(0.45, 0.40, diff_macro_f1_vs_prior_ci_low=-0.01, diff_macro_f1_vs_prior_ci_high=0.1)
    beyond = _c(0.45, 0.40, diff_macro_f1_vs_prior_ci_low=0.01, diff_macro_f1_vs_prior_ci_high=0.1)
    assert not decide(inside, None, PromotionRule(require_ci=True)).promote
    assert decide(beyond, None, PromotionRule(require_ci=True)).promote


def test_the_decision_says_whether_the_gate_checked_the_interval():
    # the verdict beside it may call the same difference "within the interval": the reason
    # must not read as if the interval had been checked when it was not
    beyond = _c(0.45, 0.40, diff_macro_f1_vs_prior_ci_low=0.01, diff_macro_f1_vs_prior_ci_high=0.1)
    assert "point estimate" in decide(beyond, None, PromotionRule()).reason
    with_ci = decide(beyond, None, PromotionRule(require_ci=True)).reason
    assert "beyond its interval" in with_ci and "point estimate" not in with_ci


def test_require_trading_needs_a_sharpe_above_buy_and_hold():
    rule = PromotionRule(require_trading=True)
    assert not decide(_c(0.5, model_sharpe=0.4, buy_and_hold_sharpe=0.7), None, rule).promote
    assert decide(_c(0.5, model_sharpe=0.9, buy_and_hold_sharpe=0.7), None, rule).promote
    missing = decide(_c(0.5), None, rule)
    assert not missing.promote and "backtest" in missing.reason


def test_gate_none_compares_with_the_champion_only():
    assert decide({"macro_f1": 0.3}, None, PromotionRule(gate="none")).promote


def test_worse_challenger_is_not_promoted():
    assert not decide(_c(0.40), _c(0.45), PromotionRule()).promote


def test_better_challenger_is_promoted():
    assert decide(_c(0.50), _c(0.45), PromotionRule()).promote


def test_gain_within_margin_is_not_enough():
    assert not decide(_c(0.46), _c(0.45), PromotionRule(margin=0.02)).promote


def test_gain_inside_champion_interval_is_not_enough_with_require_ci():
    champ = {"macro_f1": 0.45, "macro_f1_ci_low": 0.40, "macro_f1_ci_high": 0.52}
    assert not decide(_c(0.50), champ, PromotionRule(require_ci=True, gate="none")).promote


def test_gain_beyond_champion_interval_promotes_with_require_ci():
    champ = {"macro_f1": 0.45, "macro_f1_ci_low": 0.40, "macro_f1_ci_high": 0.48}
    assert decide(_c(0.50), champ, PromotionRule(require_ci=True, gate="none")).promote


def test_lower_is_better_metric_promotes_the_smaller_loss():
    chal = {"log_loss": 0.9, "baseline_prior_log_loss": 1.1}
    assert decide(chal, {"log_loss": 1.0}, PromotionRule(metric="log_loss")).promote
    assert not decide({"log_loss": 0.9, "baseline_gbt_log_loss": 0.8}, None,
                      PromotionRule(metric="log_loss")).promote


def test_missing_metric_is_a_clear_error():
    with pytest.raises(LobseqError, match="no metric 'sharpe'"):
        decide({"macro_f1": 0.5}, None, PromotionRule(metric="sharpe"))


# ------------------------------------------------------------ registry (MLflow)


@pytest.fixture(scope="module")
def _store(module_mlflow_store):
    """The module's MLflow store, with registration that needs no logged model."""
    with pytest.MonkeyPatch.context() as mp:
        yield _fake_registration(mp), module_mlflow_store.root


@pytest.fixture()
def store(_store, request, monkeypatch):
    """The module's store; each test gets its own registered model name as `NAME`."""
    global NAME
    NAME = "m_" + request.node.name[:50]
    monkeypatch.chdir(_store[1])
    return _store[0]


def _fake_registration(monkeypatch):
    import mlflow

    c = mlflow.MlflowClient()

    def fake_register(model_uri, name, tags=None):
        try:
            c.create_registered_model(name)
        except mlflow.exceptions.MlflowException:
            pass
        return str(c.create_model_version(name, source=model_uri, tags=tags).version)

    monkeypatch.setattr("lobseq.registry.champion.register", fake_register)
    return c


NAME = "m"


def _challenge(score, champion_score=None, **kw):
    return registry.champion_challenger(
        NAME, f"runs:/{score}/model", {"macro_f1": score, "baseline_prior_macro_f1": 0.1},
        evaluate=lambda uri: {"macro_f1": champion_score}, rule=PromotionRule(), log=lambda m: None,
        **kw)


def test_a_first_challenger_below_the_baselines_moves_no_alias_and_is_tagged(store):
    d = registry.champion_challenger(NAME, "runs:/x/model", {"macro_f1": 0.3,
                                                             "baseline_gbt_macro_f1": 0.4},
                                     evaluate=lambda uri: {}, rule=PromotionRule(),
                                     log=lambda m: None)
    assert not d.promote and registry.champion_version(NAME, store) is None
    tags = store.get_model_version(NAME, d.challenger["version"]).tags
    assert tags["lobseq.decision"] == "below_baseline" and "gbt" in tags["lobseq.decision_reason"]


def test_first_challenge_sets_champion(store):
    _challenge(0.4)
    assert registry.champion_version(NAME, store) == "1"


def test_worse_challenger_leaves_the_alias(store):
    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)
    assert registry.champion_version(NAME, store) == "1"


def test_better_challenger_moves_the_alias(store):
    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    assert registry.champion_version(NAME, store) == "2"


def test_decision_and_both_scores_are_tagged_on_the_version(store):
    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)
    tags = store.get_model_version(NAME, "2").tags
    assert (tags["lobseq.decision"], tags["lobseq.challenger_score"], tags["lobseq.champion_score"]) \
        == ("kept_champion", "0.3", "0.4")


def test_failure_while_scoring_the_champion_leaves_the_alias(store):
    _challenge(0.4)

    def boom(uri):
        raise RuntimeError("evaluation crashed")

    with pytest.raises(RuntimeError):
        registry.champion_challenger(NAME, "runs:/x/model", _c(0.9), evaluate=boom,
                                     rule=PromotionRule(), log=lambda m: None)
    assert registry.champion_version(NAME, store) == "1"


def test_failure_after_the_decision_leaves_the_alias(store):
    _challenge(0.4)

    def crash(decision):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _challenge(0.9, champion_score=0.4, on_decision=crash)
    assert registry.champion_version(NAME, store) == "1"


def test_promotion_remembers_previous_champion(store):
    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    assert str(registry.version_by_alias(NAME, registry.PREVIOUS, store).version) == "1"


def test_rollback_restores_the_previous_champion(store):
    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    registry.rollback(NAME, store)
    assert registry.champion_version(NAME, store) == "1"


def test_rollback_steps_back_twice(store):
    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    _challenge(0.6, champion_score=0.5)
    registry.rollback(NAME, store)
    registry.rollback(NAME, store)
    assert registry.champion_version(NAME, store) == "1"


def test_rollback_without_history_is_an_error(store):
    _challenge(0.4)
    with pytest.raises(LobseqError, match="no previous champion"):
        registry.rollback(NAME, store)


def test_rollback_without_history_says_how_to_promote_by_hand(store):
    _challenge(0.4)
    with pytest.raises(LobseqError) as err:
        registry.rollback(NAME, store)
    assert f"lobseq models promote {NAME} VERSION" in str(err.value)


def test_list_shows_a_manual_promotion_after_the_automatic_decision(store):
    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)  # kept: v1 stays champion
    registry.promote(NAME, "2", store)
    row = next(r for r in registry.list_versions(NAME, store) if str(r["version"]) == "2")
    assert row["decision"] == "kept_champion; manual"


def test_manual_promote_of_missing_version_is_an_error(store):
    _challenge(0.4)
    with pytest.raises(LobseqError, match="no version 7"):
        registry.promote(NAME, "7", store)


def test_cli_models_promote_then_rollback(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)
    runner = CliRunner()
    assert runner.invoke(cli, ["models", "promote", NAME, "2"]).exit_code == 0
    result = runner.invoke(cli, ["models", "rollback", NAME])
    assert (result.exit_code, registry.champion_version(NAME, store)) == (0, "1"), result.output


def test_cli_models_list_shows_the_champion(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    _challenge(0.4)
    result = CliRunner().invoke(cli, ["models", "list", NAME])
    assert "champion" in result.output, result.output


def test_cli_models_list_of_an_unknown_name_exits_2_with_one_line(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    _challenge(0.4)
    result = CliRunner().invoke(cli, ["models", "list", "no-such-model"])
    assert result.exit_code == 2, result.output
    assert "no registered model named 'no-such-model'" in result.output


# ------------------------------------------------------------ the registry lock, rollback --to


def test_a_second_holder_of_the_registry_lock_gets_lock_held(store):
    from lobseq.errors import LockHeld
    from lobseq.locks import run_lock
    from lobseq.registry.aliases import registry_lock_path

    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)
    with run_lock(registry_lock_path(NAME)):  # e.g. a pipeline's promote stage in another process
        for change in (lambda: registry.promote(NAME, "2", store),
                       lambda: registry.rollback(NAME, store),
                       lambda: _challenge(0.9, champion_score=0.4)):
            with pytest.raises(LockHeld):
                change()
    assert registry.champion_version(NAME, store) == "1"
    assert len(store.search_model_versions(f"name='{NAME}'")) == 2  # no challenger registered


def test_the_registry_lock_lives_next_to_the_store(store):
    from lobseq.registry.aliases import registry_lock_path

    assert registry_lock_path(NAME).as_posix().endswith(f"mlruns/.locks/registry-{NAME}.lock")


def test_changes_to_different_models_do_not_block_each_other(store):
    from lobseq.locks import run_lock
    from lobseq.registry.aliases import registry_lock_path

    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    with run_lock(registry_lock_path("another-model")):
        registry.promote(NAME, "1", store)
    assert registry.champion_version(NAME, store) == "1"


def test_cli_promote_exits_75_while_the_registry_is_locked(store):
    from click.testing import CliRunner

    from lobseq.cli import cli
    from lobseq.locks import run_lock
    from lobseq.registry.aliases import registry_lock_path

    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)
    with run_lock(registry_lock_path(NAME)):
        result = CliRunner().invoke(cli, ["models", "promote", NAME, "2"])
    assert result.exit_code == 75, result.output
    assert registry.champion_version(NAME, store) == "1"


def test_rollback_to_an_earlier_champion_cuts_the_history_back(store):
    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    _challenge(0.6, champion_score=0.5)
    assert registry.rollback(NAME, store, to="1") == ("3", "1")
    assert registry.champion_version(NAME, store) == "1"
    with pytest.raises(LobseqError, match="no previous champion"):
        registry.rollback(NAME, store)


def test_rollback_to_a_version_that_was_never_champion_is_an_error(store):
    _challenge(0.4)
    _challenge(0.3, champion_score=0.4)  # v2 was kept out
    _challenge(0.5, champion_score=0.4)
    with pytest.raises(LobseqError, match="v2 was not an earlier champion") as err:
        registry.rollback(NAME, store, to="2")
    assert "earlier champions: 1" in str(err.value)
    assert registry.champion_version(NAME, store) == "3"


def test_cli_rollback_to_a_version(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    _challenge(0.4)
    _challenge(0.5, champion_score=0.4)
    _challenge(0.6, champion_score=0.5)
    result = CliRunner().invoke(cli, ["models", "rollback", NAME, "--to", "1"])
    assert result.exit_code == 0 and f"{NAME}@champion: v3 → v1" in result.output, result.output


def test_cli_promote_without_a_champion_says_so(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    store.create_registered_model(NAME)
    store.create_model_version(NAME, source="runs:/x/model")
    result = CliRunner().invoke(cli, ["models", "promote", NAME, "1"])
    assert result.exit_code == 0 and f"{NAME}@champion: no champion → v1" in result.output
