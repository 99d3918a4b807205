import numpy as np
import pandas as pd
import pytest
from standin_models import bars_model

from lobseq.errors import LobseqError
from lobseq.serving.predict import predict_files

DAYS = 90


MIN_ROWS = 4  # bars_model(): warm-up 1 + window 3


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    from lobseq.data.simulate import simulate_bars

    d = tmp_path_factory.mktemp("bars")
    simulate_bars(d, symbols=("AAA", "BBB"), days=DAYS, seed=0)
    return d


def test_one_row_per_predictable_timestamp(bars, tmp_path):
    table = predict_files(bars_model(), [bars], "bars", tmp_path / "p.parquet")
    assert len(table) == 2 * (DAYS - MIN_ROWS + 1)


def test_output_columns(bars, tmp_path):
    out = tmp_path / "p.parquet"
    predict_files(bars_model(), [bars], "bars", out)
    assert list(pd.read_parquet(out).columns) == [
        "instrument", "timestamp", "row", "p_down", "p_up", "direction", "horizon", "model_name",
        "model_version"]


def test_direction_is_the_most_probable_class(bars, tmp_path):
    table = predict_files(bars_model(), [bars], "bars", tmp_path / "p.parquet")
    assert (table["direction"] == np.where(table["p_up"] > table["p_down"], "up", "down")).all()


def test_model_version_is_recorded(bars, tmp_path):
    table = predict_files(bars_model(), [bars], "bars", tmp_path / "p.parquet")
    assert set(table["model_version"]) == {"3"}


def test_csv_output_when_asked(bars, tmp_path):
    predict_files(bars_model(), [bars], "bars", tmp_path / "p.csv")
    assert pd.read_csv(tmp_path / "p.csv")["instrument"].tolist()[0] == "AAA"


def test_failure_leaves_no_partial_output(bars, tmp_path, monkeypatch):
    model = bars_model()

    def boom(windows):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.forecaster, "forward", boom)
    out = tmp_path / "p.parquet"
    with pytest.raises(RuntimeError):
        predict_files(model, [bars], "bars", out)
    assert list(tmp_path.iterdir()) == []


def test_too_short_file_is_a_clear_error(bars, tmp_path):
    with pytest.raises(LobseqError, match="fewer than the 100"):
        predict_files(bars_model(window=99), [bars], "bars", tmp_path / "p.parquet")


def test_rows_are_checked_as_ingest_checks_them(bars, tmp_path):
    from lobseq.data.sources import read_bars

    frame = read_bars(bars)[0].frame.iloc[::-1].reset_index(drop=True)  # newest first
    with pytest.raises(LobseqError, match="row 1, field 'timestamp': timestamp goes backwards"):
        bars_model().forecaster.proba_rows(frame)


@pytest.mark.slow
def test_real_logged_model_predicts_every_window(bars, tmp_path, mlflow_store):
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.serving.loader import load_model
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import model_uri, train_and_log

    ingest([bars], tmp_path / "ds", IngestConfig(format="bars", window=5, horizon=1, n_classes=2,
                                                 fractions=(0.5, 0.25, 0.25)), log=lambda m: None)
    run_id = train_and_log(tmp_path / "ds", TrainConfig(model="rnn", epochs=1, hyper={"units": 4}),
                           experiment="p", log=lambda m: None)
    model = load_model(model_uri(run_id))
    table = predict_files(model, [bars], "bars", tmp_path / "p.parquet")
    assert len(table) == 2 * (DAYS - model.forecaster.min_rows + 1)
