"""Every numba kernel run as plain Python (``NUMBA_DISABLE_JIT=1``) gives the compiled
kernels' numbers: numba's typing and loop semantics change nothing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jit_twin  # noqa: E402


def test_kernels_equal_their_pure_python_run(tmp_path):
    out = tmp_path / "nojit.npz"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, str(HERE / "jit_twin.py"), str(out)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    plain = dict(np.load(out))
    compiled = jit_twin.results()
    assert set(plain) == set(compiled)
    for key, value in compiled.items():
        assert value.shape == plain[key].shape, key
        # math.sin/cos of Python and of LLVM may differ in the last bit: 1e-9 relative
        np.testing.assert_allclose(plain[key], value, rtol=1e-9, atol=1e-9, equal_nan=True,
                                   err_msg=key)
    assert compiled["markers"].shape[0] == compiled["ttl"].shape[0] == 3
    assert compiled["artifact"].shape[0] == 3
