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
