"""SIGTERM as Ctrl-C while an engine runs, so a scheduler's kill cancels the work cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGTERM inside the block.

    Only where nobody chose a handler yet (SIG_DFL) and in the main thread; the
    previous handler is back afterwards. Without it, SIGTERM ends the process
    at once: no task is cancelled and MLflow runs stay RUNNING.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
