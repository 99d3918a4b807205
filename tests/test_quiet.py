import os
import subprocess
import sys

import pytest

BANNER = "absl::InitializeLog"
CODE = "from lobseq.quiet import quiet_tensorflow; quiet_tensorflow(); import keras; print('ok')"


def _stderr(**env) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "LOBSEQ_TF"))}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env={**full, **env}, timeout=120, check=True)
    assert out.stdout.strip() == "ok"
    return out.stderr


@pytest.mark.slow
def test_tensorflow_start_up_chatter_is_hidden_unless_asked_for():
    verbose = _stderr(LOBSEQ_TF_VERBOSE="1")
    if BANNER not in verbose:
        pytest.skip("this TensorFlow prints no start-up banner: nothing to hide")
    assert BANNER not in _stderr()


RETRACE = """
from lobseq.quiet import quiet_tensorflow
quiet_tensorflow()
import tensorflow as tf
for _ in range(7):  # like loading seven models in one process
    f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    f(tf.zeros([3]))
"""


@pytest.mark.slow
def test_the_many_models_retracing_notice_is_hidden_unless_asked_for():
    def stderr(**env):
        full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "LOBSEQ_TF"))}
        return subprocess.run([sys.executable, "-c", RETRACE], capture_output=True, text=True,
                              env={**full, **env}, timeout=120, check=True).stderr

    if "retracing" not in stderr(LOBSEQ_TF_VERBOSE="1"):
        pytest.skip("this TensorFlow gives no retracing notice here: nothing to hide")
    assert "retracing" not in stderr()
