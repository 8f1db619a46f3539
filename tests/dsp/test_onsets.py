"""Onset methods on hand-made MEPs: clean, after slow deviations, after an artifact tail."""

import numpy as np
import pytest

from mepkit.dsp.features import measure_epochs
from mepkit.params import ONSET_METHODS, Params
from mepkit.sim.emg import mep_waveform

FS = 5000.0
TMIN_MS = -200.0
N = int(0.3 * FS)
T_MS = TMIN_MS + np.arange(N) * 1000.0 / FS
ONSET_MS = 22.0
#: Worst error (ms) of each method on a clean 1 mV MEP in 3 µV noise (its design: the
#: sliding window and the tangent are late on a smooth start by construction).
TOLERANCE_MS = {"threshold": 0.5, "hodges": 1.0, "tkeo": 1.0, "slope": 1.2}


def make(amplitude_uv=1000.0, *, noise_uv=3.0, seed=0, onset_ms=ONSET_MS, polarity=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, noise_uv, N)
    w = mep_waveform(FS, amplitude_uv, shape={"polarity": polarity})
    k = int(np.searchsorted(T_MS, onset_ms - 1e-9))
    x[k:k + w.size] += w
    return x


def bump(level_uv, end_ms, width_ms):
    """A smooth deviation (raised cosine) ending at ``end_ms``."""
    y = np.zeros(N)
    inside = (T_MS >= end_ms - width_ms) & (T_MS <= end_ms)
    y[inside] = level_uv * np.sin(np.pi * (T_MS[inside] - end_ms + width_ms) / width_ms) ** 2
    return y


def tail(level_at_10ms_uv, tau_ms):
    """A slow artifact recovery: an exponential from the stimulus."""
    y = np.zeros(N)
    after = T_MS >= 0
    y[after] = level_at_10ms_uv * np.exp(-(T_MS[after] - 10.0) / tau_ms)
    return y


def measure(x, method="threshold", **kw):
    p = Params(onset_method=method, line_freq_hz=None, **kw)
    r = measure_epochs(np.atleast_2d(x)[:, None, :], FS, p, tmin_s=TMIN_MS / 1000.0)
    return r["latency_ms"][:, 0], r["onset_ambiguous"][:, 0]


def old_walkback(x):
    """The walk-back mepkit used before: the first crossing of 5 x RMS, walked back while
    the deviation stays above one RMS (the same cleaning, without the low-pass)."""
    bg = x[(T_MS >= -105) & (T_MS < -5)]
    rms = np.sqrt(np.mean((bg - bg.mean()) ** 2))
    y = x - bg.mean()
    r0 = int(np.searchsorted(T_MS, 15.0 - 1e-9))
    lb = y[r0 - 25:r0].mean()
    c = r0 + int(np.argmax(np.abs(y[r0:] - lb) >= 5 * rms))
    s = np.sign(y[c] - lb)
    j = c
    while j > r0 and s * (y[j - 1] - lb) > rms:
        j -= 1
    return T_MS[j]


@pytest.mark.parametrize("method", ONSET_METHODS)
def test_clean_mep_every_method(method):
    lat, amb = measure(np.stack([make(seed=s, polarity=(-1) ** s) for s in range(6)]), method)
    err = lat - ONSET_MS
    assert np.all(np.abs(err) <= TOLERANCE_MS[method]), err
    assert not amb.any()


@pytest.mark.parametrize("method", ["threshold", "tkeo", "slope"])
def test_slow_deviation_before_the_mep(method):
    """A 2.5 x RMS bump that runs into the MEP: the onset is not pulled more than 1 ms early."""
    xs = np.stack([make(300.0, seed=s) + bump(2.5 * 3.0 * (-1) ** s, ONSET_MS + 0.5, 8.0)
                   for s in range(6)])
    lat, _ = measure(xs, method)
    assert np.all(lat - ONSET_MS >= -1.0), lat - ONSET_MS


def test_hodges_bui_is_pulled_early_by_a_slow_deviation_and_says_so():
    """The sliding window sees the bump's rectified mean exceed mean + 3 SD: its onset is
    early, and the other methods disagree, so it is flagged."""
    xs = np.stack([make(300.0, seed=s) + bump(2.5 * 3.0 * (-1) ** s, ONSET_MS + 0.5, 8.0)
                   for s in range(6)])
    lat, amb = measure(xs, "hodges")
    early = lat - ONSET_MS < -1.0
    assert early.any()
    assert np.all(amb[early])


def test_artifact_tail_that_fooled_the_old_walk_back():
    """An artifact of the other sign recovering slowly (tau 10 ms, 3 x RMS left at the
    onset): relative to the level before the window the deviation rises into the MEP, so
    the old walk-back ran back over it; the new one stops at the MEP's foot."""
    xs = [make(400.0, seed=s) + tail(-30.0, 10.0) for s in range(6)]
    old = np.array([old_walkback(x) for x in xs])
    assert np.all(old - ONSET_MS < -4.0)  # the case is real: the old method was fooled
    lat, amb = measure(np.stack(xs))
    assert np.all(np.abs(lat - ONSET_MS) <= 0.6), lat - ONSET_MS
    assert not amb.any()


def test_low_frequency_wave_crossing_the_threshold_first():
    """A slow wave that reaches the threshold 8 ms before the MEP (of the other sign):
    the onset is on the MEP, not on the wave."""
    xs = np.stack([make(800.0, seed=s, polarity=-1) + bump(18.0, ONSET_MS - 2.0, 10.0)
                   for s in range(6)])
    for method in ("threshold", "slope"):
        lat, _ = measure(xs, method)
        assert np.all(np.abs(lat - ONSET_MS) <= 1.0), (method, lat - ONSET_MS)


def test_an_earlier_small_phase_of_the_other_sign_is_part_of_the_mep():
    shape = {"polarity": 1, "lobe_amplitudes": [0.3, 1.0, 0.4]}
    xs = []
    for s in range(4):
        x = np.random.default_rng(s).normal(0.0, 3.0, N)
        w = mep_waveform(FS, 1000.0, shape=shape)
        k = int(np.searchsorted(T_MS, ONSET_MS - 1e-9))
        x[k:k + w.size] += w
        xs.append(x)
    lat, amb = measure(np.stack(xs))
    assert np.all(np.abs(lat - ONSET_MS) <= 0.5), lat - ONSET_MS


@pytest.mark.parametrize("method", ONSET_METHODS)
def test_onset_never_outside_the_response_window(method):
    """An MEP that starts before the window (at 13 ms, window from 15 ms)."""
    lat, amb = measure(np.stack([make(2000.0, seed=s, onset_ms=13.0) for s in range(3)]),
                       method)
    assert np.all((lat >= 15.0 - 1e-9) & (lat <= 50.0)), lat


def test_onset_at_the_window_start_is_flagged():
    lat, amb = measure(np.stack([make(2000.0, seed=s, onset_ms=13.0) for s in range(3)]))
    assert np.all(lat == 15.0) and amb.all()


def test_no_mep_no_onset_no_flag():
    lat, amb = measure(np.stack([make(0.0, seed=s) for s in range(3)]))
    assert np.isnan(lat).all() and not amb.any()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="onset_method"):
        Params(onset_method="visual")


def big_tail(level_at_15ms_uv, tau_ms):
    """An artifact recovery as large as on real recordings (tens of µV at 15 ms)."""
    y = np.zeros(N)
    after = T_MS >= 0
    y[after] = level_at_15ms_uv * np.exp(-(T_MS[after] - 15.0) / tau_ms)
    return y


@pytest.mark.parametrize("tail_sign", [1, -1])
def test_large_artifact_recovery_before_the_mep(tail_sign):
    """A recovery of 30 x RMS at 15 ms (tau 8 ms), either way relative to a 1 mV MEP starting
    at 19 ms: it drifts by tens of µV through the window's start but is far from steep next
    to the MEP: the onset is at the MEP's foot, not on the drift."""
    xs = np.stack([make(1000.0, seed=s, onset_ms=19.0) + big_tail(tail_sign * 30 * 3.0, 8.0)
                   for s in range(6)])
    lat, amb = measure(xs)
    assert np.all(np.abs(lat - 19.0) <= 0.6), lat - 19.0
    assert not amb.any()


def test_response_that_is_mostly_an_artifact_recovery_is_flagged():
    """A recovery larger than a small MEP: the response's largest deviation is at the
    window's start, not after the onset: whatever onset is found, it is flagged."""
    xs = np.stack([make(120.0, seed=s, onset_ms=26.0) + big_tail(-150.0, 6.0) for s in range(4)])
    lat, amb = measure(xs)
    assert amb.all(), lat


def test_slow_flat_topped_first_phase_is_part_of_the_mep():
    # the virtual subject's channel whose MEPs begin with a phase slower than the second,
    # with a flat, noisy top longer than the walk looks over: the walk stopped at its top,
    # 4-6 ms late, until a large earlier phase counted whatever its slope
    shape = {"lobe_amplitudes": (0.88, 1.18, 0.37), "lobe_durations": (1.09, 1.15, 1.20)}
    xs = np.zeros((40, N))
    k = int(np.searchsorted(T_MS, ONSET_MS - 1e-9))
    for s in range(40):
        w = mep_waveform(FS, 300.0, shape=shape, rng=s)
        xs[s] = np.random.default_rng(s).normal(0.0, 4.0, N)
        xs[s, k:k + w.size] += w
    lat, _ = measure(xs)
    assert np.all(np.abs(lat - ONSET_MS) <= 1.0)
