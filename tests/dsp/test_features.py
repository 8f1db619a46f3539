"""The feature kernel against hand-computed values and against its NumPy twin."""

import numpy as np
import pytest

import naive
from mepkit.dsp.features import measure_epochs, reason_names
from mepkit.params import Params
from mepkit.sim.emg import mep_waveform, stimulus_artifact

FS = 5000.0
TMIN_MS = -200.0
N = int(0.3 * FS)
T_MS = TMIN_MS + np.arange(N) * 1000.0 / FS


def epoch(amplitude_uv=1000.0, latency_ms=22.0, *, noise_uv=0.0, line_uv=0.0, drift_uv=0.0,
          artifact_uv=0.0, seed=0, line_hz=50.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, noise_uv, N) if noise_uv else np.zeros(N)
    x += line_uv * np.sin(2 * np.pi * line_hz * T_MS / 1000 + 0.7)
    x += drift_uv * np.sin(2 * np.pi * 0.25 * T_MS / 1000 + 0.3)
    onset = int(np.searchsorted(T_MS, latency_ms - 1e-9))
    if amplitude_uv:
        w = mep_waveform(FS, amplitude_uv)
        x[onset:onset + w.size] += w[: N - onset]
    if artifact_uv:
        a = stimulus_artifact(FS, artifact_uv)
        s0 = int(np.searchsorted(T_MS, 0.0 - 1e-9))
        x[s0:s0 + a.size] += a[: N - s0]
    return x


def run(x, params=Params(), **kw):
    r = measure_epochs(np.atleast_2d(x)[:, None, :] if np.ndim(x) == 1 else x, FS, params,
                       tmin_s=TMIN_MS / 1000, **kw)
    return {k: v[0, 0] for k, v in r.items()}


def test_clean_mep_hand_computed():
    w = mep_waveform(FS, 800.0)
    x = epoch(800.0, 22.0)
    r = run(x, Params(lowpass_hz=None, line_freq_hz=None))
    # peak-to-peak by hand: the waveform's own max - min
    assert r["amplitude_uv"] == pytest.approx(w.max() - w.min(), rel=1e-9)
    # rectified area by hand: sum |w| * dt over the response window (MEP inside it)
    assert r["area_uv_ms"] == pytest.approx(np.abs(w).sum() * 0.2, rel=1e-6)
    assert r["background_rms_uv"] == pytest.approx(0.0, abs=1e-9)
    assert 22.0 <= r["latency_ms"] <= 22.4
    assert r["detected"] and reason_names(r["reject_code"]) == ""


@pytest.mark.parametrize("amp", [60.0, 100.0, 300.0, 1000.0, 4000.0])
def test_amplitude_unbiased_by_line_noise_drift_artifact_and_filters(amp):
    """Mains, drift, a 6 mV artifact and the epoch filter change the p2p by < 3 %."""
    for seed in range(5):
        x = epoch(amp, 22.0, line_uv=40.0, drift_uv=150.0, artifact_uv=6000.0, seed=seed)
        r = run(x)
        assert r["amplitude_uv"] == pytest.approx(amp, rel=0.03)
        assert abs(r["latency_ms"] - 22.0) < 0.5


@pytest.mark.parametrize(("amp", "latency_tol_ms"), [(100.0, 1.3), (1000.0, 0.5)])
def test_noisy_trials_measure_what_was_recorded(amp, latency_tol_ms):
    """With EMG noise, the result equals the p2p of MEP+noise as recorded (no mains/drift)."""
    lat = []
    for seed in range(10):
        clean = epoch(amp, 22.0, noise_uv=4.0, seed=seed)
        resp = clean[(T_MS >= 15) & (T_MS <= 50)]
        as_recorded = resp.max() - resp.min()
        r = run(epoch(amp, 22.0, noise_uv=4.0, line_uv=40.0, drift_uv=150.0, artifact_uv=6000.0,
                      seed=seed))
        assert r["amplitude_uv"] == pytest.approx(as_recorded, rel=0.04)
        assert r["background_rms_uv"] < 6.0  # mains and drift are removed
        lat.append(r["latency_ms"])
    # onsets rise smoothly from zero, so small MEPs are found up to ~1 ms late; noise can move them a few samples early
    err = np.array(lat) - 22.0
    assert np.all(err >= -0.5) and np.all(err <= latency_tol_ms)


def test_60hz_mains_is_removed_when_told():
    x = epoch(500.0, noise_uv=3.0, line_uv=50.0, line_hz=60.0)
    bad = run(x)  # default 50 Hz: the 60 Hz residual inflates the background
    good = run(x, Params(line_freq_hz=60.0))
    assert good["background_rms_uv"] < 5.0 < bad["background_rms_uv"]
    assert good["amplitude_uv"] == pytest.approx(500.0, rel=0.05)


def test_no_mep_is_not_detected_and_has_no_latency():
    r = run(epoch(0.0, noise_uv=4.0, line_uv=30.0, artifact_uv=5000.0))
    assert not r["detected"]
    assert np.isnan(r["latency_ms"])
    assert r["amplitude_uv"] < 50.0


def test_background_contraction_rejected():
    x = epoch(500.0, noise_uv=4.0)
    rng = np.random.default_rng(3)
    x[T_MS < 0] += rng.normal(0, 60.0, (T_MS < 0).sum())
    r = run(x)
    assert r["background_rms_uv"] > 20.0
    assert reason_names(r["reject_code"]) == "background"


def test_nan_gap_clipping_flags():
    x = epoch(500.0, noise_uv=4.0)
    y = x.copy()
    y[1100] = np.nan  # inside the response window
    assert reason_names(run(y)["reject_code"]) == "invalid"
    assert np.isnan(run(y)["amplitude_uv"])
    assert reason_names(run(x, gap=True)["reject_code"]) == "gap"
    c = epoch(3000.0, noise_uv=4.0)
    c = np.minimum(c, 1000.0)  # amplifier saturates at +1 mV
    assert reason_names(run(c)["reject_code"]) == "clipped"


def test_short_pre_stimulus_shortens_background():
    x = epoch(500.0, noise_uv=4.0, line_uv=30.0)
    keep = T_MS >= -50.0
    r = measure_epochs(x[keep][None, None, :], FS, Params(), tmin_s=T_MS[keep][0] / 1000)
    assert r["amplitude_uv"][0, 0] == pytest.approx(500.0, rel=0.05)
    assert r["background_rms_uv"][0, 0] < 6.0


def test_kernel_equals_numpy_twin(rng):
    params = Params()
    trials = []
    for k in range(24):
        amp = [0.0, 30.0, 80.0, 400.0, 2500.0][k % 5]
        x = epoch(amp, 18.0 + (k % 7), noise_uv=4.0, line_uv=30.0, drift_uv=100.0,
                  artifact_uv=5000.0, seed=k)
        if k == 20:
            x[T_MS < 0] += rng.normal(0, 50.0, (T_MS < 0).sum())
        if k == 21:
            x[900] = np.nan
        if k == 23:  # a 400 uV MEP on an amplifier that saturates at +-150 uV
            x = np.clip(x, -150, 150)
        trials.append(x)
    ep = np.stack(trials).reshape(12, 2, N)
    got = measure_epochs(ep, FS, params, tmin_s=TMIN_MS / 1000)
    ref = naive.measure_epochs(ep, FS, params, tmin_ms=TMIN_MS)
    for key in ("amplitude_uv", "latency_ms", "area_uv_ms", "background_rms_uv", "peak_time_ms"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-7, atol=1e-6, equal_nan=True,
                                   err_msg=key)
    np.testing.assert_array_equal(got["detected"], ref["detected"])
    np.testing.assert_array_equal(reason_names(got["reject_code"]), ref["reason"])
    assert set(ref["reason"].ravel()) >= {"", "background", "invalid", "clipped"}


def test_trials_measured_together_equal_each_alone():
    """Trials with different sub-sample stimulus times share a cached fit design only
    when their windows cover the same samples (the background window's end included)."""
    eps = np.stack([epoch([0.0, 70.0, 900.0][k % 3], 20.0 + k % 5, noise_uv=4.0, line_uv=30.0,
                          drift_uv=100.0, artifact_uv=5000.0, seed=k) for k in range(24)])
    eps = eps.reshape(12, 2, N)
    # windows whose lengths are not whole samples: their starts and ends move apart
    params = Params(background_window_ms=(-100.07, -4.93), response_window_ms=(15.03, 49.91))
    t0 = TMIN_MS + np.linspace(0.0, 0.199, 12)
    together = measure_epochs(eps, FS, params, tmin_s=t0 / 1000)
    for k in range(12):
        alone = measure_epochs(eps[k:k + 1], FS, params, tmin_s=t0[k] / 1000)
        for key in alone:
            np.testing.assert_array_equal(together[key][k], alone[key][0], err_msg=key)


def test_parallel_blocks_equal_serial_kernel():
    """Many epochs run on the thread pool in blocks; results equal one serial pass."""
    from mepkit.dsp.features import measure_rows

    eps = np.stack([epoch([0.0, 70.0, 900.0][k % 3], 20.0 + k % 5, noise_uv=4.0, line_uv=30.0,
                          artifact_uv=5000.0, seed=k) for k in range(130)]).reshape(65, 2, N)
    par = measure_epochs(eps, FS, Params(), tmin_s=TMIN_MS / 1000)  # >= 64 trials: parallel path
    rows = np.ascontiguousarray(eps.transpose(0, 2, 1)).reshape(-1, 2)
    ser = measure_rows(rows, np.arange(65) * N, N, FS, Params(), tmin_ms=TMIN_MS)
    for key in par:
        np.testing.assert_array_equal(par[key], ser[key], err_msg=key)


def test_kernel_reject_codes_are_the_reasons_table():
    """The kernel's reject codes index the one table of reasons, mepkit.params.REJECT_REASONS."""
    from mepkit.dsp import _features as k
    from mepkit.params import REJECT_REASONS

    codes = {"invalid": k.INVALID, "gap": k.GAP, "clipped": k.CLIPPED,
             "background": k.BACKGROUND}
    for name, code in codes.items():
        assert REJECT_REASONS[code - 1] == name
        assert reason_names(np.array([code]))[0] == name
    assert reason_names(np.array([0]))[0] == ""
