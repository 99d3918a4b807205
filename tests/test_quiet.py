import os
import subprocess
import sys

import pytest

IMPORT = "from lobseq.quiet import quiet_tensorflow; quiet_tensorflow(); import keras; print('ok')"
RETRACE = """
from lobseq.quiet import quiet_tensorflow
quiet_tensorflow()
import tensorflow as tf
for _ in range(7):  # like loading seven models in one process
    f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    f(tf.zeros([3]))
"""


def _stderr(code: str, **env) -> str:
    """stderr of `code` in a fresh interpreter, without the caller's TF/lobseq log settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "LOBSEQ_TF"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**full, **env}, timeout=120, check=True).stderr


def _hidden_unless_asked(code: str, marker: str) -> None:
    if marker not in _stderr(code, LOBSEQ_TF_VERBOSE="1"):
        pytest.skip(f"this TensorFlow prints no {marker!r} here: nothing to hide")
    assert marker not in _stderr(code)


@pytest.mark.slow
def test_tensorflow_start_up_chatter_is_hidden_unless_asked_for():
    _hidden_unless_asked(IMPORT, "absl::InitializeLog")


@pytest.mark.slow
def test_the_many_models_retracing_notice_is_hidden_unless_asked_for():
    _hidden_unless_asked(RETRACE, "retracing")
