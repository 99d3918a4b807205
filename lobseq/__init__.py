"""lobseq: forecast price direction from price series and limit-order-book data."""

import os

# Before anything imports mlflow: no usage telemetry unless the user turned it on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
