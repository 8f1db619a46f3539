"""The Pipeline: chunking invariance, late markers, triggers, gaps, units."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mepkit.params import Params
from mepkit.pipeline import Pipeline
from mepkit.sim.emg import synthesize_recording

FS = 5000.0
T0 = 1234.5


@pytest.fixture(scope="module")
def session():
    rng = np.random.default_rng(1)
    n = 12
    stims = T0 + 1.0 + np.arange(n) * 0.8 + rng.uniform(0, 0.1, n)
    amps = np.stack([rng.uniform(0, 3000, n), rng.uniform(0, 800, n)], axis=1)
    amps[::4] = 0.0
    lats = rng.normal(22, 1, (n, 2))
    data, ts, truth = synthesize_recording(FS, 2, stims, amps, lats,
                                           duration_s=stims[-1] - T0 + 0.5, t0_s=T0, seed=2)
    markers = [json.dumps({"intensity": 40 + k, "x_mm": k, "site": "s%d" % k}) for k in range(n)]
    return data, ts, stims, markers, amps, lats


def run(data, ts, stims, markers, cuts, params=Params(), **kw):
    p = Pipeline(params, sfreq_hz=FS, channel_labels=["FDI", "APB"], **kw)
    p.add_markers(stims, markers)
    out, start = [], 0
    for c in cuts:
        out += p.push(data[start:start + c], ts[start:start + c])
        start += c
    out += p.push(data[start:], ts[start:])
    out += p.finish()
    return sorted(out, key=lambda t: t.index)


def table(trials):
    return np.array([[t.amplitude_uv, t.latency_ms, t.area_uv_ms, t.background_rms_uv,
                      t.peak_time_ms, t.detected] for t in trials])


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40))
def test_identical_results_for_any_chunking(session, cuts):
    data, ts, stims, markers, _, _ = session
    ref = run(data, ts, stims, markers, [])
    got = run(data, ts, stims, markers, cuts)
    assert [t.index for t in got] == [t.index for t in ref]
    np.testing.assert_array_equal(table(got), table(ref))
    assert [t.reject_reason for t in got] == [t.reject_reason for t in ref]


@pytest.mark.parametrize("params", [
    Params(),
    # the artifact window reaches into the background window and the response window:
    # the fit and the rows after the artifact wait for the sample after the artifact
    Params(artifact_window_ms=(-8.0, 17.0), background_window_ms=(-60.0, -2.0)),
    Params(lowpass_hz=None, line_freq_hz=None),
], ids=["defaults", "overlapping-windows", "no-filters"])
def test_sample_by_sample_equals_all_at_once(session, params):
    """A live trial is measured as its samples arrive; the result is the same bit for bit
    as measuring its whole window at once."""
    data, ts, stims, markers, _, _ = session
    n = int(np.searchsorted(ts, stims[3] + 0.2))  # four trials, 3 s
    # and four more 60 ms after them: two trials in progress at once
    t_all = np.concatenate([stims[:4], stims[:4] + 0.06])
    m_all = markers[:4] * 2
    ref = run(data[:n], ts[:n], t_all, m_all, [], params=params)
    # a 1 s ring buffer: it wraps around while trials are being measured
    got = run(data[:n], ts[:n], t_all, m_all, [1] * n, params=params, buffer_s=1.0)
    assert [t.index for t in got] == list(range(8))
    np.testing.assert_array_equal(table(got), table(ref))
    assert [t.reject_reason for t in got] == [t.reject_reason for t in ref]
    assert [t.last_sample_s for t in got] == [t.last_sample_s for t in ref]


def test_trial_completes_with_the_last_sample_its_window_needs(session):
    """Not one sample later: the last sample measured is the last at or before the end of
    the response window (the stimulus falls between samples)."""
    data, ts, stims, markers, _, _ = session
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"])
    p.add_markers(stims[:3], markers[:3])
    n = int(np.searchsorted(ts, stims[2] + 0.2))
    came = {}
    for i in range(n):
        for t in p.push(data[i:i + 1], ts[i:i + 1]):
            came[t.index] = (ts[i], t)
    assert sorted(came) == [0, 1, 2]
    for k, (pushed_ts, t) in came.items():
        end_s = stims[k] + Params().response_window_ms[1] / 1000.0
        assert t.last_sample_s == pytest.approx(pushed_ts, abs=1e-9)  # the fitted clock
        assert t.last_sample_s <= end_s + 1e-9 < t.last_sample_s + 1.0 / FS


def test_trials_match_ground_truth_and_metadata(session):
    data, ts, stims, markers, amps, lats = session
    trials = run(data, ts, stims, markers, [1000] * 50)
    assert len(trials) == len(stims)
    for t, a, lat in zip(trials, amps, lats):
        assert t.stim.intensity_pct_mso == 40 + t.index
        assert t.stim.site == f"s{t.index}"
        for c in range(2):
            if a[c] > 100:
                assert t.detected[c]
                assert t.amplitude_uv[c] == pytest.approx(a[c], rel=0.1)
                assert abs(t.latency_ms[c] - lat[c]) < 1.3
            elif a[c] == 0:
                assert not t.detected[c]
                assert np.isnan(t.latency_ms[c])


def test_late_markers_are_measured_identically(session):
    data, ts, stims, markers, _, _ = session
    ref = run(data, ts, stims, markers, [])
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"])
    out = []
    step = 250  # 50 ms chunks; each marker arrives 400 ms after its pulse
    pending = list(zip(stims, markers))
    for start in range(0, len(ts), step):
        out += p.push(data[start:start + step], ts[start:start + step])
        now = ts[min(len(ts), start + step) - 1]
        while pending and pending[0][0] + 0.4 <= now:
            p.add_markers([pending[0][0]], [pending[0][1]])
            pending.pop(0)
    p.add_markers([s for s, _ in pending], [m for _, m in pending])
    out += p.push(np.zeros((0, 2)), np.zeros(0)) + p.finish()
    got = sorted(out, key=lambda t: t.index)
    np.testing.assert_array_equal(table(got[:-1]), table(ref[:-1]))


def test_marker_after_buffer_is_late_not_wrong(session, caplog):
    data, ts, stims, markers, _, _ = session
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"], buffer_s=1.0)
    p.push(data, ts)
    trials = p.push(np.zeros((0, 2)), np.zeros(0))
    p.add_trigger(stims[0], markers[0])  # 9 s late, data long gone
    trials = p.push(data[-1:] * 0, ts[-1:] + 1 / FS)
    assert len(trials) == 1 and trials[0].reject_reason == ("late", "late")
    assert np.isnan(trials[0].amplitude_uv).all()
    assert "left the" in caplog.text and p.n_late_triggers == 1


@pytest.mark.parametrize("delay_s", [0.5, 0.88, 0.9, 0.96, 0.99])
def test_marker_whose_background_left_the_buffer_is_late(session, delay_s):
    """A marker that comes when its stimulus sample is still buffered but not all of its
    background (here 1 s of buffer, the background starts 105 ms before the stimulus) is
    rejected as `late`, never measured on what is left; one whose background is all there
    is measured exactly as an on-time marker."""
    data, ts, stims, markers, _, _ = session
    ref = run(data, ts, stims, markers, [])
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"], buffer_s=1.0)
    assert p.capacity == FS * 1.0
    k = 3
    upto = int(np.searchsorted(ts, stims[k] + delay_s))
    p.push(data[:upto], ts[:upto])
    index = p.add_trigger(stims[k], markers[k])
    trials = p.push(data[upto:upto + 1], ts[upto:upto + 1])
    assert [t.index for t in trials] == [index]
    held_from_s = ts[upto + 1 - p.capacity]  # the oldest sample still in the buffer
    background_s = stims[k] + Params().background_window_ms[0] / 1000.0
    if background_s < held_from_s - 1 / FS:
        assert trials[0].reject_reason == ("late", "late")
        assert np.isnan(trials[0].amplitude_uv).all()
    else:
        assert trials[0].reject_reason == ref[k].reject_reason
        np.testing.assert_array_equal(table(trials), table([ref[k]]))


def test_marker_filter_selects_pulses(session):
    data, ts, stims, markers, _, _ = session
    extra_t = list(stims) + [stims[0] + 0.3]
    extra_m = list(markers) + ["block start"]
    trials = run(data, ts, extra_t, extra_m, [], marker_filter=r"intensity")
    assert len(trials) == len(stims)


def test_ttl_channel_triggers_and_is_not_measured(session):
    data, ts, stims, _, amps, _ = session
    ttl = np.zeros((len(ts), 1))
    for s in stims:
        i = np.searchsorted(ts, s)
        ttl[i:i + 5] = 5.0  # 5 V, 1 ms
    ttl[np.searchsorted(ts, stims[3]) + 20] = 5.0  # a glitch 4 ms later: refractory
    x = np.hstack([data, ttl])
    p = Pipeline(Params(ttl_threshold=2.5), sfreq_hz=FS, channel_labels=["FDI", "APB", "TRIG"],
                 trigger_channel="TRIG")
    out = []
    for start in range(0, len(ts), 333):
        out += p.push(x[start:start + 333], ts[start:start + 333])
    out += p.finish()
    assert p.channels == ("FDI", "APB")
    assert len(out) == len(stims)
    times = np.array(sorted(t.stim_time_s for t in out))
    assert np.all(np.abs(times - stims) <= 1 / FS + 1e-9)
    ref = run(data, ts, stims, ["x"] * len(stims), [])
    got = sorted(out, key=lambda t: t.stim_time_s)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.amplitude_uv, b.amplitude_uv, rtol=0.02, atol=3.0)


def test_artifact_detection_finds_every_pulse(session):
    data, ts, stims, _, _, _ = session
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"], artifact_triggers=True)
    out = []
    for start in range(0, len(ts), 777):
        out += p.push(data[start:start + 777], ts[start:start + 777])
    out += p.finish()
    times = np.array(sorted(t.stim_time_s for t in out))
    assert len(times) == len(stims)
    assert np.all(np.abs(times - stims) < 0.6e-3)


def test_gap_and_nan_are_flagged_others_measured(session):
    data, ts, stims, markers, _, _ = session
    d = data.copy()
    t = ts.copy()
    i2 = np.searchsorted(ts, stims[2])
    keep = np.r_[0:i2 + 50, i2 + 100:len(t)]  # 10 ms of samples lost right after pulse 2
    d, t = d[keep], t[keep]
    i5 = np.searchsorted(t, stims[5])
    d[i5 + 120, 1] = np.nan  # one NaN in APB during the response of pulse 5
    trials = run(d, t, stims, markers, [4000] * 20)
    ref = run(data, ts, stims, markers, [])
    assert trials[2].reject_reason == ("gap", "gap")
    assert trials[5].reject_reason[1] == "invalid" and trials[5].reject_reason[0] != "invalid"
    others = [k for k in range(len(trials)) if k not in (2, 5)]
    assert [trials[k].reject_reason for k in others] == [ref[k].reject_reason for k in others]
    np.testing.assert_array_equal(table([trials[k] for k in others]),
                                  table([ref[k] for k in others]))
    assert trials[5].amplitude_uv[0] == ref[5].amplitude_uv[0]


def test_units_scale_to_microvolts(session):
    data, ts, stims, markers, _, _ = session
    ref = run(data, ts, stims, markers, [])
    volts = run(data * 1e-6, ts, stims, markers, [], scale_to_uv=1e6)
    np.testing.assert_allclose(table(volts), table(ref), rtol=1e-6, atol=1e-6)


def test_recording_that_ends_early_marks_last_trial_invalid(session):
    data, ts, stims, markers, _, _ = session
    cut = np.searchsorted(ts, stims[-1] + 0.02)
    trials = run(data[:cut], ts[:cut], stims, markers, [])
    assert trials[-1].reject_reason == ("invalid", "invalid")
    assert all(r != "invalid" for tr in trials[:-1] for r in tr.reject_reason)


def test_bad_arguments_say_what():
    with pytest.raises(ValueError, match="not found"):
        Pipeline(sfreq_hz=FS, channel_labels=["a"], trigger_channel="TRIG")
    with pytest.raises(ValueError, match="positive"):
        Pipeline(sfreq_hz=0, channel_labels=["a"])
    p = Pipeline(sfreq_hz=FS, channel_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        p.push(np.zeros((3, 3)), np.zeros(3))


def test_clock_reset_mid_stream(session, caplog):
    data, ts, stims, markers, _, _ = session
    ref = run(data, ts, stims, markers, [])
    cut = np.searchsorted(ts, stims[6] - 0.3)
    t = ts.copy()
    t[cut:] -= 100.0
    p = Pipeline(Params(), sfreq_hz=FS, channel_labels=["FDI", "APB"])
    p.add_markers(stims[:6], markers[:6])
    out = []
    for start in range(0, len(t), 1111):
        if start <= cut < start + 1111:
            out += p.push(data[start:cut + 7], t[start:cut + 7])  # reset inside this chunk
            p.add_markers(stims[6:] - 100.0, markers[6:])
            out += p.push(data[cut + 7:start + 1111], t[cut + 7:start + 1111])
        else:
            out += p.push(data[start:start + 1111], t[start:start + 1111])
    out += p.finish()
    got = sorted(out, key=lambda tr: tr.index)
    assert p.n_clock_resets == 1 and "clock jumped back" in caplog.text
    # the new timeline's fitted clock rounds differently in the last bits (1e-10 ms)
    np.testing.assert_allclose(table(got), table(ref), rtol=0, atol=1e-6)
