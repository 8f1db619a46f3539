"""Compile (or load from the on-disk cache) every numba kernel mepkit uses.

The first use of a kernel in a fresh installation compiles it, which takes seconds; a
live session should not pay that at its first pulse, and several processes started at
once (a test run, a batch on Dask) should not all compile the same kernels. Run
``python -m mepkit.warm`` once after installing; later processes load the cache.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["compile_all"]


def compile_all() -> float:
    """Compile every kernel for the argument types mepkit passes; returns seconds taken."""
    from mepkit.analyze import analyze_epochs
    from mepkit.dsp.features import measure_rows
    from mepkit.dsp.filters import StreamingFilter, design_monitor_filter
    from mepkit.params import Params
    from mepkit.pipeline import Pipeline

    t0 = time.perf_counter()
    p = Params()
    # Pipeline: ring buffer, TTL and artifact triggers, trials measured at once and
    # trials measured as their samples arrive
    Pipeline(p, sfreq_hz=5000.0, channel_labels=["a", "t"], trigger_channel="t",
             artifact_triggers=True)
    n = 4000
    measure_rows(np.zeros((n, 64)), np.zeros(1, dtype=np.int64), n, 20000.0, p, tmin_ms=-110.0)
    # exported epochs: trial blocks in parallel (and the serial path for few trials)
    analyze_epochs(np.zeros((64, 2, 1500)), 5000.0, -0.2)
    analyze_epochs(np.zeros((2, 2, 1500)), 5000.0, -0.2)
    StreamingFilter(design_monitor_filter(5000.0, p), 2).process(np.zeros((4, 2)))
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"mepkit kernels ready in {compile_all():.1f} s")
