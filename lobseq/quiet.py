"""Import TensorFlow without its C++ start-up chatter.

TensorFlow 2.21 prints absl's "All log messages before absl::InitializeLog()"
banner, oneDNN and CUDA-stub notes, and on a CPU machine a `cuInit` error,
before TF_CPP_MIN_LOG_LEVEL can take effect. None of it is actionable for a
lobseq user, and it buried the one line a command prints. Set
LOBSEQ_TF_VERBOSE=1 to see it again.
"""

from __future__ import annotations

import logging
import os
import sys


class _NoRetracingNotice(logging.Filter):
    """Each loaded model gets its own fixed-signature tf.function; TF's heuristic reads
    several models loaded in one process (evaluate, promote) as wasteful retracing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow() -> None:
    """Import tensorflow once with the process's stderr (fd 2) sent to /dev/null."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also hides the later cuInit error
    if "tensorflow" in sys.modules or os.environ.get("LOBSEQ_TF_VERBOSE"):
        return
    logging.getLogger("tensorflow").addFilter(_NoRetracingNotice())
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
