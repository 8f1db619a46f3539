"""Tests of the synthetic EMG generator (mepkit.sim.emg)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mepkit.sim.emg import (
    EmgSynth,
    epochs_from_recording,
    mep_waveform,
    stimulus_artifact,
    synthesize_recording,
)

QUIET = dict(
    noise_rms_uv=0.0, line_amplitude_uv=0.0, drift_amplitude_uv=0.0, artifact_amplitude_uv=0.0
)


def _amplitude_spectrum(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) / (np.hanning(len(x)).sum() / 2)
    return np.fft.rfftfreq(len(x), 1 / fs), spec


# ------------------------------------------------------------------ MEP waveform


@pytest.mark.parametrize("fs", [1000.0, 2048.0, 4800.0, 5000.0, 10000.0, 25000.0])
@pytest.mark.parametrize("amp", [1.0, 50.0, 1234.5, 8000.0])
@pytest.mark.parametrize("phases", [1, 2, 3, 4])
def test_mep_p2p_exact(fs, amp, phases):
    w = mep_waveform(fs, amp, phases=phases)
    assert w.dtype == np.float64
    assert (w.max() - w.min()) == pytest.approx(amp, rel=1e-9)
    w = mep_waveform(fs, amp, phases=phases, rng=np.random.default_rng(3), duration_ms=15.0)
    assert (w.max() - w.min()) == pytest.approx(amp, rel=1e-9)


@pytest.mark.parametrize("fs", [1000.0, 5000.0, 20000.0])
@pytest.mark.parametrize("polarity", [1, -1])
def test_mep_onset_at_zero_and_shape(fs, polarity):
    amp = 1000.0
    w = mep_waveform(fs, amp, shape={"polarity": polarity})
    assert w[0] == 0.0
    assert w[1] != 0.0  # first nonzero sample right after onset
    # smooth rise: small in the first 0.2 ms, growing monotonically in the first 2 ms
    assert np.all(np.abs(w[: int(0.2e-3 * fs) + 1]) < 0.02 * amp)
    assert abs(w[1]) < 0.15 * amp
    rise = polarity * w[: int(2e-3 * fs)]
    assert np.all(np.diff(rise) > 0)
    # first peak 3-6 ms after onset, with the polarity of the first lobe
    first_peak = int(np.argmax(polarity * w[: int(8e-3 * fs)]))
    assert 3.0 <= first_peak * 1000 / fs <= 6.0
    # polyphasic: the opposite lobe is of comparable size
    assert (-polarity * w).max() > 0.3 * amp
    # ends at 0 smoothly, length follows duration_ms
    assert len(w) == int(20e-3 * fs) + 1
    assert abs(w[-1]) < 1e-9 * amp
    assert np.all(np.abs(w[-max(2, int(0.2e-3 * fs)):]) < 0.02 * amp)


def test_mep_zero_crossings_and_duration_scaling():
    fs = 10000.0
    w3 = mep_waveform(fs, 500.0, phases=3)
    sign_changes = np.count_nonzero(np.diff(np.sign(w3[1:-1])) != 0)
    assert sign_changes == 2
    w_long = mep_waveform(fs, 500.0, duration_ms=25.0)
    w_short = mep_waveform(fs, 500.0, duration_ms=10.0)
    assert len(w_long) == 251 and len(w_short) == 101
    assert np.argmax(w_long) > np.argmax(w3) > np.argmax(w_short)


def test_mep_rng_varies_shape_but_not_p2p():
    a = mep_waveform(5000.0, 300.0, rng=np.random.default_rng(1))
    b = mep_waveform(5000.0, 300.0, rng=np.random.default_rng(2))
    c = mep_waveform(5000.0, 300.0, rng=np.random.default_rng(1))
    assert a.shape == b.shape
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(mep_waveform(5000.0, 300.0), mep_waveform(5000.0, 300.0))


def test_mep_bad_arguments():
    with pytest.raises(ValueError):
        mep_waveform(5000.0, -1.0)
    with pytest.raises(ValueError):
        mep_waveform(0.0, 1.0)
    with pytest.raises(ValueError):
        mep_waveform(5000.0, 1.0, phases=0)
    with pytest.raises(ValueError):
        mep_waveform(5000.0, 1.0, shape={"polarityy": 1})
    assert np.all(mep_waveform(5000.0, 0.0) == 0)


# --------------------------------------------------------------------- artifact


@pytest.mark.parametrize("fs", [1000.0, 5000.0, 10000.0, 20000.0])
@pytest.mark.parametrize("amp", [2000.0, 5000.0, 10000.0, -8000.0])
def test_artifact(fs, amp):
    a = stimulus_artifact(fs, amp)
    assert len(a) == int(round(10e-3 * fs))
    assert (a.max() - a.min()) == pytest.approx(abs(amp), rel=1e-9)
    # biphasic spike within the first 0.4 ms (at least two samples)
    spike = max(2, int(round(0.4e-3 * fs)))
    assert np.argmax(a) < spike and np.argmin(a) < spike
    assert np.sign(a[0]) == np.sign(amp)
    assert np.sign(a[np.argmax(np.abs(a) * (np.sign(a) != np.sign(amp)))]) == -np.sign(amp)
    # decays: negligible after 8 ms, exactly 0 at the end
    assert np.all(np.abs(a[int(np.ceil(8e-3 * fs)):]) < 0.5)
    assert a[-1] == 0.0
    # ...but is still a visible exponential tail at 1 ms
    assert abs(a[int(1e-3 * fs) + spike]) > 1.0


def test_artifact_tau_controls_decay():
    fast = stimulus_artifact(5000.0, 5000.0, tau_ms=0.5)
    slow = stimulus_artifact(5000.0, 5000.0, tau_ms=2.0)
    assert abs(slow[20]) > 10 * abs(fast[20])


# --------------------------------------------------------------- EmgSynth basics


def _scheduled(fs=5000.0, nch=3, **kw):
    s = EmgSynth(fs, nch, seed=7, **kw)
    P = s.page_size
    # pulses straddling page and block boundaries, one with fractional onset
    s.add_pulse(P - 30, [800.0, 0.0, 200.0], [20.0, 21.0, 22.13])
    s.add_pulse(2 * P - 3, 1500.0, 18.3)
    s.add_pulse(9000, [50.0, 60.0, 70.0], 25.0, artifact=False)
    s.add_contraction(P - 500, 2 * P + 300, 40.0, channels=[0, 2])
    s.add_contraction(3 * P + 10, 3 * P + 2000, [25.0, 10.0, 5.0])
    return s


@pytest.mark.parametrize("block", [1, 7, 1000, 4096, 5000])
def test_block_size_invariance(block):
    total = 4 * 4096 + 123
    ref = _scheduled().generate(total)
    s = _scheduled()
    parts, left = [], total
    while left:
        parts.append(s.generate(min(block, left)))
        left -= parts[-1].shape[0]
    got = np.concatenate(parts)
    assert s.position == total
    np.testing.assert_array_equal(got, ref)
    # sanity: the scheduled events are really in the data (the test can fail)
    assert np.abs(ref[4096 - 30 : 4096, 0]).max() > 500.0


def test_block_invariance_with_irregular_blocks_and_late_scheduling():
    total = 3 * 4096 + 77
    ref = _scheduled().generate(total)
    s = EmgSynth(5000.0, 3, seed=7)
    rng = np.random.default_rng(0)
    parts = [s.generate(100)]
    # schedule the same events in the same order, after generation started
    P = s.page_size
    s.add_pulse(P - 30, [800.0, 0.0, 200.0], [20.0, 21.0, 22.13])
    s.add_pulse(2 * P - 3, 1500.0, 18.3)
    s.add_pulse(9000, [50.0, 60.0, 70.0], 25.0, artifact=False)
    s.add_contraction(P - 500, 2 * P + 300, 40.0, channels=[0, 2])
    s.add_contraction(3 * P + 10, 3 * P + 2000, [25.0, 10.0, 5.0])
    while s.position < total:
        parts.append(s.generate(min(int(rng.integers(0, 3000)), total - s.position)))
    np.testing.assert_array_equal(np.concatenate(parts), ref)


def test_seed_determinism_and_difference():
    a = EmgSynth(2000.0, 2, seed=1).generate(3000)
    b = EmgSynth(2000.0, 2, seed=1).generate(3000)
    c = EmgSynth(2000.0, 2, seed=2).generate(3000)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a[:, 0], a[:, 1])


@pytest.mark.parametrize("fs,rms", [(5000.0, 4.0), (1000.0, 10.0), (20000.0, 2.5)])
def test_noise_rms(fs, rms):
    s = EmgSynth(fs, 4, seed=3, noise_rms_uv=rms, line_amplitude_uv=0.0,
                 drift_amplitude_uv=0.0, artifact_amplitude_uv=0.0)
    x = s.generate(int(5 * fs))
    got = np.sqrt(np.mean(x**2, axis=0))
    np.testing.assert_allclose(got, rms, rtol=0.1)
    assert np.all(np.abs(x.mean(axis=0)) < 0.1 * rms)


@pytest.mark.parametrize("line_hz", [50.0, 60.0])
def test_line_noise_peak(line_hz):
    fs = 5000.0
    s = EmgSynth(fs, 3, seed=5, line_freq_hz=line_hz, drift_amplitude_uv=0.0,
                 artifact_amplitude_uv=0.0)
    x = s.generate(int(4 * fs))
    for c in range(3):
        f, spec = _amplitude_spectrum(x[:, c], fs)
        band = (f > 5) & (f < 1000)
        assert f[band][np.argmax(spec[band])] == pytest.approx(line_hz, abs=0.5)
        peak = spec[np.argmin(np.abs(f - line_hz))]
        assert peak == pytest.approx(30.0, rel=0.05)
        for h in (2, 3):
            hp = spec[np.argmin(np.abs(f - h * line_hz))]
            assert 1.0 < hp < peak
    # random phase per channel
    assert not np.allclose(x[:, 0], x[:, 1], atol=5.0)


def test_line_off_and_drift_band():
    fs = 1000.0
    amp = 100.0
    s = EmgSynth(fs, 4, seed=11, noise_rms_uv=0.0, line_amplitude_uv=0.0,
                 artifact_amplitude_uv=0.0, drift_amplitude_uv=amp)
    x = s.generate(int(60 * fs))
    assert np.all(np.abs(x) <= amp + 1e-9)
    assert np.all(x.max(axis=0) - x.min(axis=0) > 0.3 * amp)
    for c in range(4):
        f, spec = _amplitude_spectrum(x[:, c], fs)
        power = spec**2
        assert power[f < 1.0].sum() > 0.99 * power.sum()
    assert not np.allclose(x[:, 0], x[:, 1], atol=1.0)


def test_contraction_rms_band_and_channels():
    fs = 5000.0
    s = EmgSynth(fs, 3, seed=2, **QUIET)
    start, stop = 5000, 25000
    s.add_contraction(start, stop, [80.0, 30.0], channels=[0, 2])
    x = s.generate(30000)
    plateau = x[start + 500 : stop - 500]
    rms = np.sqrt(np.mean(plateau**2, axis=0))
    assert rms[0] == pytest.approx(80.0, rel=0.1)
    assert rms[2] == pytest.approx(30.0, rel=0.1)
    assert np.all(x[:, 1] == 0.0)
    assert np.all(x[:start] == 0.0) and np.all(x[stop:] == 0.0)
    # smooth ramp: first 10 ms clearly below plateau
    assert np.sqrt(np.mean(x[start : start + 50, 0] ** 2)) < 0.3 * rms[0]
    f, spec = _amplitude_spectrum(plateau[:, 0], fs)
    power = spec**2
    assert power[(f >= 15) & (f <= 300)].sum() > 0.8 * power.sum()
    assert power[f < 5].sum() < 0.01 * power.sum()


# ------------------------------------------------------------------ ground truth


def test_ground_truth_and_rendered_meps():
    fs = 5000.0
    s = EmgSynth(fs, 3, seed=4, **QUIET)
    e1 = s.add_pulse(1000, [500.0, 0.0, 120.0], [20.0, 19.0, 23.07])
    e2 = s.add_pulse(4000, 900.0, 21.5)
    x = s.generate(8000)
    assert len(s.ground_truth) == 2 and s.ground_truth[0] is e1 and s.ground_truth[1] is e2
    assert [e["pulse"] for e in s.ground_truth] == [0, 1]
    assert e1["sample_index"] == 1000 and e2["sample_index"] == 4000
    np.testing.assert_array_equal(e1["amplitude_uv"], [500.0, 0.0, 120.0])
    assert np.isnan(e1["latency_ms"][1]) and np.isnan(e1["onset_samples"][1])
    for e in s.ground_truth:
        ok = e["amplitude_uv"] > 0
        np.testing.assert_allclose(
            e["onset_samples"][ok],
            e["sample_index"] + e["latency_ms"][ok] * fs / 1000,
            rtol=0,
            atol=1e-9,
        )
        np.testing.assert_allclose((e["onset_samples"][ok] - e["sample_index"]) * 1000 / fs,
                                   e["latency_ms"][ok], atol=1e-9)
    assert e1["onset_samples"][2] == pytest.approx(1000 + 115.35)
    # channel 1 silent after pulse 1, until pulse 2's MEP
    assert np.all(x[:4000 + 100, 1] == 0.0)
    for e, nxt in ((e1, 4000), (e2, 8000)):
        for c in range(3):
            if e["amplitude_uv"][c] == 0:
                continue
            seg = x[e["sample_index"] : nxt, c]
            nz = np.flatnonzero(seg)
            onset_rel = e["onset_samples"][c] - e["sample_index"]
            # first nonzero sample is the first sample after the (fractional) onset
            assert nz[0] == int(np.floor(onset_rel)) + 1
            assert np.all(seg[: nz[0]] == 0.0)
            assert seg.max() - seg.min() == pytest.approx(e["amplitude_uv"][c], rel=1e-9)
            assert np.abs(seg[nz[0]]) < 0.02 * e["amplitude_uv"][c]


def test_artifact_in_stream():
    fs = 5000.0
    s = EmgSynth(fs, 2, seed=4, noise_rms_uv=0.0, line_amplitude_uv=0.0, drift_amplitude_uv=0.0)
    e = s.add_pulse(300, 0.0, 0.0)
    x = s.generate(1000)
    assert np.all(x[:300] == 0)
    p2p = x[300:350].max(axis=0) - x[300:350].min(axis=0)
    np.testing.assert_allclose(p2p, np.abs(e["artifact_amplitude_uv"]), rtol=1e-9)
    art = np.abs(e["artifact_amplitude_uv"])
    assert np.all((art >= 2500) & (art <= 5000))
    assert np.all(np.abs(x[300 + 40 :]) < 0.5)
    e2 = s.add_pulse(1200, 0.0, 0.0, artifact=False)
    assert not e2["artifact"] and np.all(e2["artifact_amplitude_uv"] == 0)
    assert np.all(s.generate(500) == 0)


def test_mep_shape_varies_between_pulses_and_channels():
    fs = 5000.0
    s = EmgSynth(fs, 2, seed=4, **QUIET)
    s.add_pulse(0, 100.0, 20.0)
    s.add_pulse(1000, 100.0, 20.0)
    x = s.generate(2000)
    a, b = x[100:201], x[1100:1201]
    assert not np.allclose(a, b)
    assert not np.allclose(a[:, 0], a[:, 1])
    s = EmgSynth(fs, 2, seed=4, mep_shape_jitter=False, **QUIET)
    s.add_pulse(0, 100.0, 20.0)
    s.add_pulse(1000, 100.0, 20.0)
    x = s.generate(2000)
    np.testing.assert_array_equal(x[100:201], x[1100:1201])


def test_bad_arguments():
    s = EmgSynth(5000.0, 2)
    with pytest.raises(ValueError):
        s.add_pulse(10, [1.0, 2.0, 3.0], 20.0)
    with pytest.raises(ValueError):
        s.add_pulse(10, -1.0, 20.0)
    with pytest.raises(ValueError):
        s.add_pulse(10, 100.0, np.nan)
    with pytest.raises(ValueError):
        s.add_contraction(100, 50, 10.0)
    with pytest.raises(ValueError):
        s.add_contraction(0, 50, 10.0, channels=[2])
    with pytest.raises(ValueError):
        s.generate(-1)
    with pytest.raises(ValueError):
        EmgSynth(5000.0, 0)
    assert s.generate(0).shape == (0, 2) and s.position == 0


# --------------------------------------------------------------- whole recording


def test_synthesize_recording_and_epochs():
    fs, nch = 4000.0, 2
    stim = np.array([1.0, 2.5, 4.00013])
    amps = np.array([[300.0, 100.0], [0.0, 50.0], [1000.0, 400.0]])
    t0 = 100.0
    data, ts, truth = synthesize_recording(
        fs, nch, stim + t0, amps, 22.0, duration_s=5.0, seed=3, t0_s=t0,
        contractions=[(t0 + 0.2, t0 + 0.6, 20.0), {"start_s": t0 + 3.0, "stop_s": t0 + 3.5,
                                                    "rms_uv": 15.0, "channels": [1]}],
        **QUIET,
    )
    assert data.shape == (20000, nch) and data.dtype == np.float64
    np.testing.assert_allclose(ts, t0 + np.arange(20000) / fs)
    assert [t["sample_index"] for t in truth] == [4000, 10000, 16001]
    expected_s = list(t0 + np.array([4000, 10000, 16001]) / fs)
    assert [t["stim_time_s"] for t in truth] == pytest.approx(expected_s)
    np.testing.assert_array_equal(np.stack([t["amplitude_uv"] for t in truth]), amps)
    assert np.all(data[:800] == 0) and np.all(data[2400:3900] == 0)
    assert np.sqrt(np.mean(data[1200:2200, 0] ** 2)) > 10

    ep = epochs_from_recording(data, fs, [t["sample_index"] for t in truth], -0.01, 0.06)
    assert ep.shape == (3, nch, 281)
    np.testing.assert_array_equal(ep[0, 1], data[4000 - 40 : 4000 + 241, 1])
    p2p = ep.max(axis=2) - ep.min(axis=2)
    np.testing.assert_allclose(p2p, amps, rtol=1e-9)
    # NaN padding outside the recording
    ep = epochs_from_recording(data, fs, [10, 19990], -0.01, 0.01)
    assert np.isnan(ep[0, :, :30]).all() and not np.isnan(ep[0, :, 30:]).any()
    assert np.isnan(ep[1, :, -31:]).all() and not np.isnan(ep[1, :, :-31]).any()

    with pytest.raises(ValueError):
        synthesize_recording(fs, nch, [6.0], 100.0, 20.0, duration_s=5.0)
    with pytest.raises(ValueError):
        synthesize_recording(fs, nch, [1.0, 2.0], np.ones((3, 2)), 20.0, duration_s=5.0)


def test_generation_speed():
    s = EmgSynth(5000.0, 16, seed=0)
    for k in range(50):
        s.add_pulse(5000 + k * 5000, 500.0, 20.0)
    s.add_contraction(10_000, 200_000, 50.0)
    t = time.perf_counter()
    x = s.generate(5000 * 60)
    elapsed = time.perf_counter() - t
    assert x.shape == (300_000, 16)
    assert elapsed < 5.0  # ~0.3 s on a laptop; 1 h would take well under a minute
