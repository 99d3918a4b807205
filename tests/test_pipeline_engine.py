"""A pipeline's `engine:` and `ray:` keys (validated with their lines, part of no stage key) and
the `tune` stage type."""

from __future__ import annotations

import pytest

from lobseq.errors import LobseqError
from lobseq.workflow.runner import run_pipeline
from lobseq.workflow.spec import load_pipeline

INGEST = """\
name: t
{top}stages:
  - name: sim
    type: simulate
    with: {{out: raw, events: 1200, levels: 3, days: 2}}
  - name: ingest
    type: ingest
    with: {{format: lobster, out: ds, window: 5, horizon: 2}}
"""


def _write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_engine_and_ray_settings_become_the_pipelines_engine_config(tmp_path):
    pipe = load_pipeline(_write(tmp_path, INGEST.format(top="engine: ray\nray: {num_cpus: 2}\n")))
    assert (pipe.engine.name, pipe.engine.num_cpus, pipe.engine.address) == ("ray", 2, None)
    assert load_pipeline(_write(tmp_path, INGEST.format(top=""))).engine.name == "local"
    pipe = load_pipeline(_write(tmp_path, INGEST.format(top="")), ["engine=ray", "ray.address=head:6379"])
    assert (pipe.engine.name, pipe.engine.address) == ("ray", "head:6379")


@pytest.mark.parametrize("top, line, key, words", [
    ("engine: spark\n", 2, "engine", "unknown engine 'spark'"),
    ("engine: ray\nray: {num_cpus: 0}\n", 3, "ray.num_cpus", "must be a positive integer"),
    ("engine: ray\nray:\n  cpus: 2\n", 4, "ray.cpus", "unknown setting"),
    ("ray: {address: 'head:6379'}\n", 2, "ray", "the engine is local"),
    ("engine: ray\nray:\n  address: 'head:6379'\n  num_cpus: 2\n", 5, "ray.num_cpus", "has its own"),
])
def test_a_bad_engine_setting_names_its_key_and_line(tmp_path, top, line, key, words):
    path = _write(tmp_path, INGEST.format(top=top))
    with pytest.raises(LobseqError) as info:
        load_pipeline(path)
    assert f"line {line}, key '{key}'" in str(info.value) and words in str(info.value)


def test_the_engine_is_in_no_stage_key(tmp_path):
    from lobseq.workflow.runner import stage_key

    local = load_pipeline(_write(tmp_path, INGEST.format(top="")))
    ray = load_pipeline(_write(tmp_path, INGEST.format(top="engine: ray\nray: {num_cpus: 3}\n")))
    for a, b in zip(local.stages, ray.stages, strict=True):
        assert stage_key(a, {"x": 1}) == stage_key(b, {"x": 1})


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_an_ingest_stage_runs_on_ray_and_a_local_rerun_reuses_it(ray_local, module_mlflow_store, tmp_path,
                                                                  monkeypatch):
    """engine: ray ingests on the session's Ray instance; the same pipeline on the local engine
    then finds the stage unchanged (same key) and reuses it; the dataset equals a local ingest."""
    import mlflow

    from lobseq.data.ingest import IngestConfig, ingest

    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, INGEST.format(top=""))
    first = run_pipeline(path, ["engine=ray"], log=lambda m: None)
    second = run_pipeline(path, log=lambda m: None)
    assert [s.status for s in first.stages] == ["ran", "ran"]
    assert [s.status for s in second.stages] == ["skipped", "skipped"]
    assert mlflow.get_run(first.run_id).data.params["pipeline.engine"] == "ray"
    local = ingest(["raw"], tmp_path / "local" / "ds", IngestConfig(format="lobster", window=5, horizon=2,
                                                                   name="ds"), log=lambda m: None)
    assert first.outputs("ingest")["dataset_hash"] == local.hash


TUNE = """\
name: sweep
stages:
  - name: tune
    type: tune
    with: {{dataset: {dataset}, model: gru, space: space.yaml, trials: 2, epochs: 1,
           max_train_windows: 200, max_val_windows: 200, register: swept}}
  - name: evaluate
    type: evaluate
    with: {{n_boot: 20, max_baseline_train: 500}}
"""


def test_a_tune_stage_validates_its_settings_and_space(tmp_path):
    (tmp_path / "space.yaml").write_text("units: {choice: [4]}\n")
    text = TUNE.format(dataset="ds")
    assert load_pipeline(_write(tmp_path, text)).stage("tune").settings["trials"] == 2
    with pytest.raises(LobseqError, match=r"line 5, key 'stages\.0\.with\.scheduler'"):
        load_pipeline(_write(tmp_path, text.replace("trials: 2", "trials: 2, scheduler: lifo")))
    no_register = text.replace(", register: swept", "")
    with pytest.raises(LobseqError, match="needs an upstream train stage"):
        load_pipeline(_write(tmp_path, no_register))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tune_stage_registers_its_best_model_for_the_stages_after_it(lobster_dataset, module_mlflow_store,
                                                                       tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("units: {choice: [4, 6]}\n")
    path = _write(tmp_path, TUNE.format(dataset=lobster_dataset.path))
    result = run_pipeline(path, log=lambda m: None)
    tuned = result.outputs("tune")
    best = tuned["tune"]["gru"]["best"]
    assert tuned["tune"]["gru"]["version"] == "1" and best["units"] in (4, 6)
    assert tuned["models"]["gru"]["run_id"] == tuned["tune"]["gru"]["model_run_id"]
    assert "macro_f1" in result.outputs("evaluate")["evaluations"]["gru"]
    again = run_pipeline(path, log=lambda m: None)
    assert [s.status for s in again.stages] == ["skipped", "skipped"]
