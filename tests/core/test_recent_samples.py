"""The Pipeline's recent-samples copy (read by another thread) and the background RMS."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mepkit.live import compute_block_rms_uv
from mepkit.params import Params
from mepkit.pipeline import Pipeline

FS = 5000.0


def test_recent_samples_are_never_torn_while_another_thread_pushes():
    """Sample k carries the value k and the timestamp k / FS; a copy taken across a
    ring write would break that relation (the kernel runs without the GIL). Copies of
    the whole ring overlap the rows being overwritten, short ones the newest rows."""
    pipe = Pipeline(Params(), sfreq_hz=FS, channel_labels=["A", "B"], buffer_s=0.2)
    stop = threading.Event()
    pushed = [0]

    def writer():
        k = 0
        rng = np.random.default_rng(0)
        while not stop.is_set() and k < 2_000_000:
            n = int(rng.integers(1, 400))
            idx = np.arange(k, k + n, dtype=np.float64)
            pipe.push(np.stack([idx, -idx], axis=1), idx / FS)
            k += n
            pushed[0] = k

    th = threading.Thread(target=writer)
    th.start()
    checked = 0
    try:
        while th.is_alive() and checked < 3000:
            x, t = pipe.recent_samples(0.05 if checked % 2 else 10.0, "B")
            if x.size:
                np.testing.assert_array_equal(-x, np.round(t * FS))
                np.testing.assert_array_equal(np.diff(t * FS).round(), 1.0)
                checked += 1
    finally:
        stop.set()
        th.join()
    assert checked > 100 and pushed[0] > 10_000
    x, t = pipe.recent_samples(10.0, 0)  # more than the ring holds: the whole ring
    assert x.shape[0] == pipe.capacity and x[-1] == pushed[0] - 1


def test_recent_samples_bad_channel_and_empty():
    pipe = Pipeline(Params(), sfreq_hz=FS, channel_labels=["A"])
    x, t = pipe.recent_samples(0.5, "A")
    assert x.shape == t.shape == (0,)
    with pytest.raises(ValueError, match="'Z' is not measured"):
        pipe.recent_samples(0.5, "Z")
    with pytest.raises(ValueError, match="out of range"):
        pipe.recent_samples(0.5, 3)


def test_block_rms_removes_mains_and_drift_but_not_voluntary_emg(rng):
    t = np.arange(int(0.5 * FS)) / FS
    noise = rng.normal(0.0, 4.0, t.size)
    mains = 40.0 * np.sin(2 * np.pi * 50 * t + 0.3) + 10 * np.sin(2 * np.pi * 150 * t)
    drift = 300.0 + 150.0 * t
    rest = compute_block_rms_uv(noise + mains + drift, FS, Params(), 500)
    assert rest.shape == (5,)
    np.testing.assert_allclose(rest, 4.0, rtol=0.15)
    # a burst of voluntary EMG in the fourth block only
    burst = np.zeros(t.size)
    burst[1600:1900] = rng.normal(0.0, 60.0, 300)
    active = compute_block_rms_uv(noise + mains + drift + burst, FS, Params(), 500)
    assert np.all(active[[0, 1, 2, 4]] < 6.0) and active[3] > 30.0
    # a block with a NaN is NaN (a gate treats it as not relaxed); leftover samples ignored
    bad = noise.copy()
    bad[10] = np.nan
    out = compute_block_rms_uv(bad[:1234], FS, Params(), 500)
    assert out.shape == (2,) and np.isfinite(out).all()  # the NaN is in the dropped head
    out = compute_block_rms_uv(bad, FS, Params(), 500)
    assert np.isnan(out[0]) and np.isfinite(out[1:]).all()
