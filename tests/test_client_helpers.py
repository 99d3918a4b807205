"""What clients of `lobseq serve` read and send: the request body, and served versions."""

import numpy as np
import pandas as pd

from lobseq.serving.metrics import served_versions
from lobseq.serving.payload import parse_payload, split_payload


def test_split_payload_is_read_back_by_the_service_parser():
    rows = pd.DataFrame({"timestamp": pd.date_range("2026-01-05", periods=5, freq="s"),
                         "bid_price_1": np.arange(5.0), "ask_price_1": np.arange(5.0) + 0.5,
                         "unused": np.zeros(5)})
    columns, data, params = parse_payload(split_payload(rows, ["ask_price_1", "bid_price_1"], 3))
    assert columns == ["ask_price_1", "bid_price_1", "timestamp"] and params == {}
    assert [r[:2] for r in data] == [[2.5, 2.0], [3.5, 3.0], [4.5, 4.0]]
    assert data[0][2] == "2026-01-05 00:00:02"


def test_served_versions_reads_each_version_and_ignores_other_metrics():
    text = ('# HELP lobseq_model_served Worker processes serving this model version\n'
            'lobseq_model_served{name="m",version="1"} 0.0\n'
            'lobseq_model_served{name="m",version="2"} 2.0\n'
            'lobseq_requests_total{endpoint="invocations",status="200"} 7.0\n')
    assert served_versions(text) == {"1": 0.0, "2": 2.0}
    assert served_versions("") == {}
