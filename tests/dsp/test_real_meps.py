"""Real EMG around TMS pulses: what must hold on any real recording.

The data are the five example traces of tool-dimep (MIT; ``tests/data/real-meps/README.md``):
1 kHz, µV, the pulse at sample 1000, a contracted muscle. Nobody marked their onsets, so
these tests check what holds whatever the true onsets are; the figures measured on real
recordings are in ``benchmarks/onsets_real.py`` and ``docs/methods.md`` ("Real recordings").
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mepkit.analyze import analyze_epochs
from mepkit.dsp.features import measure_epochs
from mepkit.dsp.mains import detect_line_freq, detect_line_freq_epochs
from mepkit.params import ONSET_METHODS, Params

DATA = Path(__file__).resolve().parent.parent / "data" / "real-meps" / "dimep_examples.npy"
SHA256 = "db55790c7d3a45fd3cd1c79e0066957dc2abbe1f31a892312ca498f420ba53ae"
SFREQ_HZ = 1000.0
TMIN_S = -1.0
EPS_MS = 1e-6


@pytest.fixture(scope="module")
def traces_uv():
    return np.load(DATA)


def times_ms(n_samples):
    return TMIN_S * 1000.0 + np.arange(n_samples) * 1000.0 / SFREQ_HZ


def numpy_clean(x, t_ms, p):
    """Offset and slope fitted over the background window [start, stop) and subtracted: what
    mepkit does to these traces (no mains in them; no low-pass at 1 kHz), written anew."""
    assert p.lowpass_hz is None or p.lowpass_hz >= 0.45 * SFREQ_HZ
    lo, hi = p.background_window_ms
    bg = (t_ms >= lo - EPS_MS) & (t_ms < hi - EPS_MS)
    design = np.stack([np.ones_like(t_ms), t_ms * 1e-3], axis=1)
    coef, *_ = np.linalg.lstsq(design[bg], x[bg], rcond=None)
    return x - design @ coef, bg


def in_window(t_ms, window_ms):
    return (t_ms >= window_ms[0] - EPS_MS) & (t_ms <= window_ms[1] + EPS_MS)


def line_ratio(x, sfreq_hz, f0_hz):
    """Hann periodogram of one segment: the lines (f0 and two harmonics, strongest bin within
    1 Hz) over the mean power 3-6 Hz away on both sides."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    s = x - np.polyval(np.polyfit(np.arange(n), x, 1), np.arange(n))
    power = np.abs(np.fft.rfft(s * np.hanning(n))) ** 2
    f = np.fft.rfftfreq(n, 1.0 / sfreq_hz)
    line = side = 0.0
    for h in (1, 2, 3):
        d = np.abs(f - h * f0_hz)
        line += power[d <= 1.0].max()
        side += power[(d >= 3.0) & (d <= 6.0)].mean()
    return line / side


def test_the_data_are_the_documented_file():
    assert hashlib.sha256(DATA.read_bytes()).hexdigest() == SHA256
    x = np.load(DATA)
    assert x.shape == (5, 2000) and x.dtype == np.float64


def test_amplitudes_equal_a_numpy_peak_to_peak(traces_uv):
    p = Params(line_freq_hz=None)
    df = analyze_epochs(traces_uv, SFREQ_HZ, TMIN_S, params=p)
    t = times_ms(traces_uv.shape[1])
    for k, x in enumerate(traces_uv):
        y, bg = numpy_clean(x, t, p)
        ptp_uv = np.ptp(y[in_window(t, p.response_window_ms)])
        rms_uv = np.sqrt(np.mean(y[bg] ** 2))
        row = df.iloc[k]
        assert row["amplitude_uv"] == pytest.approx(ptp_uv, rel=1e-9, abs=1e-9)
        assert row["background_rms_uv"] == pytest.approx(rms_uv, rel=1e-9)
        assert row["detected"] == (ptp_uv >= p.detection_threshold_uv)
        # a contracted muscle: the trial is rejected for its background, its numbers kept
        assert row["rejected"] == (rms_uv > p.background_limit_uv)
        if row["rejected"]:
            assert row["reject_reason"] == "background"
    # what the README says of these traces: trace 1 has no response, the others do
    assert df["detected"].tolist() == [False, True, True, True, True]


@pytest.mark.parametrize("method", ONSET_METHODS)
def test_onsets_lie_in_the_response_window_before_the_peak(traces_uv, method):
    p = Params(line_freq_hz=None, onset_method=method)
    r = measure_epochs(traces_uv[:, None, :], SFREQ_HZ, p, tmin_s=TMIN_S)
    lat = r["latency_ms"][:, 0]
    amb = r["onset_ambiguous"][:, 0]
    det = r["detected"][:, 0]
    peak_ms = r["peak_time_ms"][:, 0]
    assert not np.isfinite(lat[~det]).any()  # no MEP, no onset
    assert np.isfinite(lat[det]).sum() >= 3
    for k in np.flatnonzero(det):
        if not np.isfinite(lat[k]):
            assert amb[k]  # the chosen method found none: said so
            continue
        assert p.response_window_ms[0] - EPS_MS <= lat[k] <= p.response_window_ms[1] + EPS_MS
        if lat[k] <= p.response_window_ms[0] + EPS_MS:
            assert amb[k]  # at the window's start: the response began earlier
        assert lat[k] <= peak_ms[k] + EPS_MS  # an onset does not follow the MEP's peak


def test_no_mains_in_them_and_mepkit_says_none(traces_uv):
    pre = traces_uv[:, :1000]  # the second before each pulse
    for x in pre:
        assert max(line_ratio(x, SFREQ_HZ, 50.0), line_ratio(x, SFREQ_HZ, 60.0)) < 8.0
        assert detect_line_freq(x[:, None], SFREQ_HZ).line_freq_hz is None
    assert detect_line_freq_epochs(traces_uv[:, None, :], SFREQ_HZ, TMIN_S * 1000.0) is None


def added_mains(traces_uv, line_hz, amplitude_uv):
    """Mains with two harmonics (1/4 and 1/6 of the fundamental), random phases."""
    t_s = times_ms(traces_uv.shape[1]) * 1e-3
    rng = np.random.default_rng(int(line_hz + amplitude_uv))
    mains = np.zeros_like(traces_uv)
    for k in range(len(traces_uv)):
        for h, a_uv in ((1, amplitude_uv), (2, amplitude_uv / 4), (3, amplitude_uv / 6)):
            mains[k] += a_uv * np.sin(2 * np.pi * h * line_hz * t_s + rng.uniform(0, 2 * np.pi))
    return mains


@pytest.mark.parametrize("amplitude_uv", [30.0, 60.0])
@pytest.mark.parametrize("line_hz", [50.0, 60.0])
def test_mains_decision_follows_the_spectrum_on_a_real_background(traces_uv, line_hz,
                                                                   amplitude_uv):
    """Mains added to the real traces: on each trace's second before the pulse, mepkit decides
    the frequency when its line stands >= 8 x above its neighbours in the spectrum, none when
    both lines are < 3 x, never the other frequency (under 70-190 µV RMS of contraction,
    30 µV may go unnoticed; 60 µV may not)."""
    x = traces_uv + added_mains(traces_uv, line_hz, amplitude_uv)
    other = 110.0 - line_hz
    found = 0
    for k in range(len(x)):
        seg = x[k, :1000]
        r_line, r_other = line_ratio(seg, SFREQ_HZ, line_hz), line_ratio(seg, SFREQ_HZ, other)
        decided = detect_line_freq(seg[:, None], SFREQ_HZ).line_freq_hz
        assert r_other < 8.0 and decided in (line_hz, None)
        if r_line >= 8.0:
            assert decided == line_hz
            found += 1
        elif r_line < 3.0:
            assert decided is None
    assert found >= (len(x) - 1 if amplitude_uv >= 60.0 else 1)
    # the fit over the epochs never picks the other frequency; under this much contraction
    # it may refuse to pick (docs/methods.md, "Real recordings")
    assert detect_line_freq_epochs(x[:, None, :], SFREQ_HZ, TMIN_S * 1000.0) in (line_hz, None)


def test_mains_on_a_real_background_is_removed(traces_uv):
    """With 60 µV of 50 Hz mains (the grid where the traces were recorded) added, mepkit
    decides it from the epochs and its pre-stimulus fit removes it: amplitudes and onsets are
    those of the traces without it measured at 50 Hz (the fit is linear and the added mains
    lies in its span)."""
    line_hz = 50.0
    x = traces_uv + added_mains(traces_uv, line_hz, 60.0)
    assert detect_line_freq_epochs(x[:, None, :], SFREQ_HZ, TMIN_S * 1000.0) == line_hz
    auto = measure_epochs(x[:, None, :], SFREQ_HZ, Params(), tmin_s=TMIN_S)
    ref = measure_epochs(traces_uv[:, None, :], SFREQ_HZ, Params(line_freq_hz=line_hz),
                         tmin_s=TMIN_S)
    np.testing.assert_allclose(auto["amplitude_uv"], ref["amplitude_uv"], rtol=1e-7)
    np.testing.assert_allclose(auto["latency_ms"], ref["latency_ms"], atol=1e-6)
    assert np.array_equal(auto["detected"], ref["detected"])
    assert np.array_equal(auto["reject_code"], ref["reject_code"])
