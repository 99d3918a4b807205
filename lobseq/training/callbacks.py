"""Keras callbacks for a tracked fit: per-epoch MLflow metrics and a progress line with an ETA.

Per-epoch metrics go through MLflow's own `mlflow.keras.MlflowCallback` (it also
logs the optimizer's settings as `optimizer_*` params and `model_summary.txt`),
under lobseq's names: `epoch_loss`, `epoch_accuracy`, `epoch_val_loss`,
`epoch_val_accuracy` (regression: `epoch_mae`, ...), step = epoch counted from 1
as on the console. The `epoch_` prefix keeps the curves apart from the final
scores of the restored best model (`val_accuracy`, `test_macro_f1`, ...): under
Keras' bare names the last epoch's `val_accuracy` would shadow the restored
model's in the runs table whenever early stopping goes back to an earlier epoch.
"""

from __future__ import annotations

import shutil
import sys
import time

from lobseq.quiet import quiet_tensorflow

quiet_tensorflow()  # before Keras pulls TensorFlow in

import keras  # noqa: E402
from mlflow.keras import MlflowCallback  # noqa: E402


class EpochMetrics(MlflowCallback):
    """MLflow's Keras callback, logging `epoch_<keras name>` at step = epoch (1-based)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the learning rate is a constant param here, not a curve
            logs = {f"epoch_{k}": v for k, v in logs.items() if k != "learning_rate"}
        super().on_epoch_end(epoch + 1, logs)

    def on_test_end(self, logs=None):
        # MLflow's version logs each validation pass again as `validation_*` at step 0;
        # the same numbers already arrive per epoch as `epoch_val_*`.
        return


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _metrics_text(logs: dict) -> str:
    """`loss 1.0086  accuracy 0.4874  val_loss 0.8930  val_accuracy 0.5938`: training, then validation."""
    keys = sorted((k for k in logs if k != "learning_rate"),
                  key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss"))
    return "  ".join(f"{k} {float(logs[k]):.4f}" for k in keys)


class Progress(keras.callbacks.Callback):
    """Training progress on `stream` (stderr).

    Interactive (a terminal): one line redrawn in place with the epoch, batch,
    a bar, the running loss, the epoch's ETA and the run's ETA (an upper bound:
    early stopping may end it sooner); then one line per finished epoch.
    Not interactive (a log file): one line per finished epoch, plus a progress
    line at most every `heartbeat_s` seconds within a long epoch.
    """

    def __init__(self, stream=None, interactive: bool | None = None, heartbeat_s: float = 60.0,
                 redraw_s: float = 0.25):
        super().__init__()
        self.stream = stream or sys.stderr
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.heartbeat_s = heartbeat_s
        self.redraw_s = redraw_s

    def on_train_begin(self, logs=None):
        self.epochs = int(self.params.get("epochs") or 1)
        self.steps = int(self.params.get("steps") or 0)
        self.epoch_seconds: list[float] = []
        self.best = float("inf")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = self.last_draw = time.perf_counter()

    def _per_epoch(self, per_batch: float) -> float:
        if self.epoch_seconds:
            return sum(self.epoch_seconds) / len(self.epoch_seconds)
        return per_batch * self.steps

    def _write(self, line: str, final: bool) -> None:
        """Interactive: redraw the one line in place; a final line replaces it and stays."""
        if self.interactive:
            cols = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + (" " * cols + "\r" + line + "\n" if final else line[:cols].ljust(cols)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if batch == 0:  # the first batch also builds the graph: time the rate from its end
            self.first_batch_end = now
        if batch < 2 or now - self.last_draw < (self.redraw_s if self.interactive else self.heartbeat_s):
            return
        self.last_draw = now
        done = batch + 1
        per_batch = (now - self.first_batch_end) / batch
        epoch_left = per_batch * max(self.steps - done, 0)
        run_left = epoch_left + self._per_epoch(per_batch) * (self.epochs - self.epoch - 1)
        loss = f"  loss {float(logs['loss']):.4f}" if logs and "loss" in logs else ""
        where = f"batch {done}/{self.steps}"
        if self.interactive:
            filled = int(20 * done / max(self.steps, 1))
            where = "━" * filled + "╺" + " " * max(19 - filled, 0) + f" {done}/{self.steps}"
        self._write(f"epoch {self.epoch + 1}/{self.epochs}  {where}{loss}  ETA {_clock(epoch_left)}"
                    f"  run ≤ {_clock(run_left)}", final=False)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.epoch_start
        self.epoch_seconds.append(seconds)
        logs = logs or {}
        mark = ""
        if "val_loss" in logs and float(logs["val_loss"]) < self.best:
            self.best, mark = float(logs["val_loss"]), "  (best so far)"
        left = self._per_epoch(0.0) * (self.epochs - epoch - 1)
        eta = f"  run ≤ {_clock(left)} more" if epoch + 1 < self.epochs else ""
        self._write(f"epoch {epoch + 1}/{self.epochs}  {_metrics_text(logs)}  {_clock(seconds)}"
                    f"{mark}{eta}", final=True)
