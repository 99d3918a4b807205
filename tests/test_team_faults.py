"""Faults against the real tracking server: it restarts in the middle of a pipeline run.

The restart happens when the pipeline's evaluate stage starts (its run appears on the server):
the client is then about to download the model it just trained, so it meets the outage.
- With lobseq's retry defaults (bounded, ~2 minutes) the client rides out the restart and the
  pipeline finishes: every run FINISHED, the version registered with its decision, the alias
  moved.
- With the user's own short budget (MLFLOW_HTTP_REQUEST_MAX_RETRIES=1) the stage fails while
  the server is down; the runs are marked FAILED once it is back, the CLI says so in one line,
  nothing is registered and no alias moves.
- A failure right after a challenger's registration (here: `on_decision` raising) leaves the
  version with every decision tag (it is created with them, in one call) and the alias where
  it was.
"""

from __future__ import annotations

import time

import pytest
from team_services import lobseq_run, tiny_pipeline, wait_for

pytestmark = [pytest.mark.team, pytest.mark.slow, pytest.mark.timeout(900)]

DECISION_TAGS = {"lobseq.decision", "lobseq.decision_reason", "lobseq.metric",
                 "lobseq.challenger_score", "lobseq.champion_score", "lobseq.compared_with"}


def _stage_run(experiment: str, stage: str):
    """The stage's run once it exists on the server (None before)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`lobseq.stage` = '{stage}'",
                              output_format="list")
    return runs[0] if runs else None


def _runs(experiment: str):
    import mlflow

    exp = mlflow.get_experiment_by_name(experiment)
    return mlflow.search_runs([exp.experiment_id], output_format="list")


def _restart_during_evaluate(store, name: str, env: dict, until: str):
    """Run the tiny pipeline `name`; stop the server when its evaluate stage starts, start it
    again once the client's stderr says `until` (it is retrying, or it gave up); returns
    (exit code, stderr, downtime)."""
    server, cwd = store.server, store.root / name
    # evaluate must still be busy when the server stops: on a quiet machine it took ~3 s with
    # n_boot 50 and the pipeline could finish first; 20000 bootstrap draws hold it far longer
    proc = lobseq_run(cwd, tiny_pipeline(name, name, n_boot=20000), env)
    try:
        wait_for(lambda: _stage_run(name, "evaluate") or proc.poll() is not None, 600,
                 "the evaluate stage to start")
        assert proc.poll() is None, (cwd / "stderr.txt").read_text()
        t0 = time.monotonic()
        server.stop()
        wait_for(lambda: until in (cwd / "stderr.txt").read_text() or proc.poll() is not None, 300,
                 f"the client to say {until!r}")
        assert proc.poll() is None, "the pipeline ended before it met the stopped server: " + \
            (cwd / "stderr.txt").read_text()[-2000:]
        server.start()
        downtime = time.monotonic() - t0
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not server.answering():
            server.start()
    return code, (cwd / "stderr.txt").read_text(), downtime


@pytest.fixture(scope="module")
def rode_out(module_team_store):
    """A pipeline through a server restart with lobseq's retry defaults."""
    return _restart_during_evaluate(module_team_store, "team-restart", module_team_store.env(),
                                    until="retrying")


@pytest.fixture(scope="module")
def gave_up(module_team_store, rode_out):
    """A pipeline through a server restart with a one-retry budget (the user's setting)."""
    env = module_team_store.env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
    return _restart_during_evaluate(module_team_store, "team-gave-up", env, until="does not answer")


def test_the_client_retries_through_a_restart_and_the_pipeline_finishes(rode_out):
    code, stderr, downtime = rode_out
    assert (code, "did not answer" in stderr and "retrying" in stderr) == (0, True), stderr[-3000:]
    assert downtime > 5  # the server really was away


def test_after_the_restart_every_run_is_finished_and_the_champion_moved(rode_out):
    from lobseq import registry

    assert {r.info.status for r in _runs("team-restart")} == {"FINISHED"}
    assert registry.champion_version("team-restart") == "1"


def test_after_the_restart_the_version_carries_its_decision(rode_out):
    import mlflow

    (version,) = mlflow.MlflowClient().search_model_versions("name='team-restart'")
    assert DECISION_TAGS <= set(version.tags) and version.tags["lobseq.decision"] == "promoted"


def test_a_client_that_gives_up_fails_with_one_clear_line(gave_up):
    code, stderr, _ = gave_up
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1, stderr[-3000:]
    assert "the tracking server http://127.0.0.1" in errors[0] and "did not answer" in errors[0]


def test_a_client_that_gives_up_marks_its_runs_failed_once_the_server_is_back(gave_up):
    statuses = {r.data.tags.get("lobseq.stage", r.data.tags.get("lobseq.kind")): r.info.status
                for r in _runs("team-gave-up") if r.data.tags.get("lobseq.kind") in ("pipeline", "stage")}
    assert (statuses["pipeline"], statuses["evaluate"], statuses["train"]) == \
        ("FAILED", "FAILED", "FINISHED"), statuses


def test_a_client_that_gives_up_registers_nothing_and_moves_no_alias(gave_up):
    import mlflow

    assert mlflow.MlflowClient().search_model_versions("name='team-gave-up'") == []


def test_a_failure_after_registration_leaves_the_version_with_its_decision(team_store, tmp_path):
    import mlflow
    from conftest import logged_model

    from lobseq import registry
    from lobseq.registry.champion import PromotionRule, champion_challenger

    model = logged_model(tmp_path, model="gru", events=1500, days=1)

    def fails(_decision):
        raise RuntimeError("the decision artifact could not be written")

    with pytest.raises(RuntimeError, match="could not be written"):
        champion_challenger("team-half", model.model_uri, {"macro_f1": 0.6},
                            evaluate=lambda _uri: {}, rule=PromotionRule(gate="none"),
                            log=lambda _m: None, on_decision=fails)
    (version,) = mlflow.MlflowClient().search_model_versions("name='team-half'")
    assert DECISION_TAGS <= set(version.tags) and version.tags["lobseq.decision"] == "promoted"
    assert registry.champion_version("team-half") is None
