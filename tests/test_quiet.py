import os
import subprocess
import sys

import pytest

# TensorFlow's start-up chatter (absl::InitializeLog) and its retracing notice, as when one
# process loads seven models: one interpreter shows both (each TensorFlow import costs ~10 s).
CHATTY = """
from lobseq.quiet import quiet_tensorflow
quiet_tensorflow()
import keras
import tensorflow as tf
for _ in range(7):
    f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    f(tf.zeros([3]))
"""
MARKERS = ("absl::InitializeLog", "retracing")


def _stderr(code: str, **env) -> str:
    """stderr of `code` in a fresh interpreter, without the caller's TF/lobseq log settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "LOBSEQ_TF"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**full, **env}, timeout=120, check=True).stderr


@pytest.mark.slow
def test_tensorflow_chatter_is_hidden_unless_asked_for():
    asked = _stderr(CHATTY, LOBSEQ_TF_VERBOSE="1")
    shown = [m for m in MARKERS if m in asked]
    if not shown:
        pytest.skip(f"this TensorFlow prints none of {MARKERS}: nothing to hide")
    quiet = _stderr(CHATTY)
    assert not [m for m in shown if m in quiet], quiet[-2000:]
