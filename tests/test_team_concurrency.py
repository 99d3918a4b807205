"""Four pipeline runs at once against one tracking server, plus a second "host" running the
first pipeline at the same moment with the same lock database.

Five `lobseq run` processes start together, each in its own working directory with its own lock
folder (five "hosts"), all with LOBSEQ_LOCK_URI on the session's PostgreSQL. Pipelines
team-conc-0..3 are the same tiny retraining pipeline with different seeds; team-conc-0 runs
twice. Afterwards every run, metric and artifact is counted on the server: the four pipelines
must hold the same runs (matched by kind and name), each with the same metrics and the same
artifact files, all FINISHED, and team-conc-0 exactly one champion decision.
"""

from __future__ import annotations

from collections import Counter

import pytest
from team_services import lobseq_run, tiny_pipeline

pytestmark = [pytest.mark.team, pytest.mark.slow, pytest.mark.timeout(900)]

N = 4


@pytest.fixture(scope="module")
def batch(module_team_store, lock_db):
    root = module_team_store.root
    env = module_team_store.env(LOBSEQ_LOCK_URI=lock_db)
    jobs = {}
    for k in range(N):
        jobs[f"p{k}"] = (root / f"host{k}", tiny_pipeline(f"team-conc-{k}", f"team-conc-{k}", seed=k))
    jobs["p0-again"] = (root / "host-again", tiny_pipeline("team-conc-0", "team-conc-0", seed=0))
    procs = {key: lobseq_run(cwd, text, {**env, "LOBSEQ_LOCK_DIR": str(cwd / "locks")})
             for key, (cwd, text) in jobs.items()}
    try:
        codes = {key: proc.wait(timeout=840) for key, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = {key: (cwd / "stderr.txt").read_text() for key, (cwd, _t) in jobs.items()}
    return codes, stderr


def _experiment_runs(name: str):
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    assert exp is not None, f"no experiment {name}"
    return mlflow.search_runs([exp.experiment_id], output_format="list", max_results=1000)


def _signature(run) -> tuple[str, str]:
    """What a run is, the same in each pipeline: its kind and its name (the parent's has a date)."""
    kind = run.data.tags.get("lobseq.kind", "")
    return kind, "" if kind == "pipeline" else run.info.run_name


def _artifact_files(client, run_id: str, path: str | None = None) -> list[tuple[str, int]]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifact_files(client, run_id, item.path) if item.is_dir else [(item.path, item.file_size)]
    return out


@pytest.fixture(scope="module")
def inventory(batch):
    """Per pipeline: {signature: (status, metric keys, epoch history lengths, artifact files)}."""
    import mlflow

    client = mlflow.MlflowClient()
    found = {}
    for k in range(N):
        runs = _experiment_runs(f"team-conc-{k}")
        found[k] = Counter(_signature(r) for r in runs), {
            _signature(r): (r.info.status, sorted(r.data.metrics),
                            sorted(len(client.get_metric_history(r.info.run_id, m))
                                   for m in r.data.metrics if m.startswith("epoch_")),
                            sorted(_artifact_files(client, r.info.run_id)))
            for r in runs}
    return found


def test_a_second_host_running_the_same_pipeline_exits_75(batch):
    codes, stderr = batch
    loser = "p0" if codes["p0"] == 75 else "p0-again"
    assert sorted([codes["p0"], codes["p0-again"]]) == [0, 75], (codes, stderr)
    assert "another run of pipeline 'team-conc-0' is in progress" in stderr[loser]


def test_exactly_one_champion_decision_is_recorded(batch):
    import mlflow

    versions = mlflow.MlflowClient().search_model_versions("name='team-conc-0'")
    pipelines = [r for r in _experiment_runs("team-conc-0")
                 if r.data.tags.get("lobseq.kind") == "pipeline"]
    assert ([v.tags.get("lobseq.decision") for v in versions], len(pipelines)) == (["promoted"], 1)


def test_the_four_concurrent_pipelines_all_succeed(batch):
    codes, stderr = batch
    assert [codes[f"p{k}"] for k in range(1, N)] == [0] * (N - 1), stderr


def test_every_run_of_every_pipeline_is_there_and_finished(inventory):
    counts = [inventory[k][0] for k in range(N)]
    statuses = {status for k in range(N) for status, *_ in inventory[k][1].values()}
    # pipeline + 5 stage runs + at least the training and evaluation runs under them
    assert counts[0] == counts[1] == counts[2] == counts[3] and sum(counts[0].values()) >= 8
    assert all(n == 1 for n in counts[0].values()) and statuses == {"FINISHED"}


def test_every_metric_of_every_run_is_there(inventory):
    metrics = [{sig: info[1] for sig, info in inventory[k][1].items()} for k in range(N)]
    train = [info for sig, info in inventory[0][1].items() if sig[0] == "train"]
    assert metrics[1] == metrics[0] and metrics[2] == metrics[0] and metrics[3] == metrics[0]
    # one epoch, so every per-epoch metric holds exactly one step, in each pipeline
    assert len(train) == 1 and train[0][2] and set(train[0][2]) == {1}
    assert all({s: i[2] for s, i in inventory[k][1].items()} ==
               {s: i[2] for s, i in inventory[0][1].items()} for k in range(N))


def test_every_artifact_of_every_run_is_there(inventory):
    files = [{sig: [path for path, _size in info[3]] for sig, info in inventory[k][1].items()}
             for k in range(N)]
    sizes = [size for k in range(N) for info in inventory[k][1].values() for _p, size in info[3]]
    assert files[1] == files[0] and files[2] == files[0] and files[3] == files[0]
    assert sum(len(v) for v in files[0].values()) >= 5 and all(s and s > 0 for s in sizes)


def _model_files(mlflow, uri: str) -> set[str]:
    """Base names of every file under a model URI."""
    found = set()
    for item in mlflow.artifacts.list_artifacts(artifact_uri=uri):
        name = item.path.rsplit("/", 1)[-1]
        found |= _model_files(mlflow, f"{uri}/{name}") if item.is_dir else {name}
    return found


def test_every_pipeline_registered_its_model_with_its_files(batch):
    import mlflow

    client = mlflow.MlflowClient()
    names = []
    for k in range(N):
        (version,) = client.search_model_versions(f"name='team-conc-{k}'")
        files = _model_files(mlflow, f"models:/team-conc-{k}/{version.version}")
        names.append(sorted(f for f in files if f in ("MLmodel", "model.keras", "scaler.json",
                                                      "spec.json")))
    assert names == [["MLmodel", "model.keras", "scaler.json", "spec.json"]] * N
