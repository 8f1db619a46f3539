"""The clock model (mepkit.sources.clock) on stamps as amplifier apps and liblsl make them.

Stamps made on push (`mepkit.sim.stamps.stamp_on_push`): chunk sizes 1-50 ms, stalls of
3-15 ms, +-100 ppm drift, a real 50 ms loss inside the wobble; offline (whole stream)
and live (chunk by chunk), against the true sample times; XDF files through `mepkit
analyze`; bad stamps.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from mepkit.batch import analyze_file
from mepkit.io.xdf_write import XdfStream, write_xdf
from mepkit.sim.emg import synthesize_recording
from mepkit.sim.stamps import stamp_on_push
from mepkit.sources.clock import ClockModel, clock_times, fit_clock, timeline_ranges

FS = 5000.0
CASES = {
    "1ms": dict(chunk_ms=1.0, stall_every_s=1.0, drift_ppm=100.0),
    "4ms": dict(chunk_ms=4.0, stall_every_s=1.0, drift_ppm=-60.0),
    "20ms": dict(chunk_ms=20.0, stall_every_s=1.0, drift_ppm=-100.0),
    "50ms": dict(chunk_ms=50.0, stall_every_s=1.0, drift_ppm=100.0),
    "1-50ms": dict(chunk_ms=(1.0, 50.0), stall_every_s=0.5, drift_ppm=-100.0),
}


def online(stamps, sfreq=FS, chunks=None, name="EMG"):
    """Times the live model gives, fed chunk by chunk (default: 37 samples)."""
    m = ClockModel(sfreq, name=name)
    out = np.empty(len(stamps))
    pos = 0
    sizes = chunks if chunks is not None else [37] * (len(stamps) // 37 + 1)
    for c in sizes:
        if pos >= len(stamps):
            break
        while True:
            got = m.update(stamps[pos:pos + c], out[pos:pos + c])
            pos += got
            c -= got
            if c <= 0 or pos >= len(stamps):
                break
    m.finish()
    return m


def stim_sample(times, t):
    """The Pipeline's rule: the first sample at or after the stimulus."""
    return np.searchsorted(times, t, side="left")


@pytest.mark.parametrize("case", list(CASES))
def test_stamps_made_on_push_fit_within_a_fraction_of_a_sample(case):
    p = stamp_on_push(int(40 * FS), FS, seed=3, **CASES[case])
    assert (p.stamps - p.true_s).max() > 3e-3  # the stalls are in the stamps
    fit = fit_clock(p.stamps, FS, name="EMG")
    assert fit.gaps == [] and fit.resets == [] and fit.warnings == []
    err = fit.times() - p.true_s
    # true time + the stream's smallest push delay (20 us here): a tenth of a sample
    assert err.min() > -10e-6 and err.max() < 40e-6, (err.min(), err.max())
    live = online(p.stamps)
    assert live.gaps == [] and live.n_resets == 0
    lt = live.times(0, len(p.stamps))
    assert np.all(np.diff(lt) > 0.9 / FS) and np.all(np.diff(lt) < 1.1 / FS)
    e = lt[int(FS):] - p.true_s[int(FS):]  # after the first second
    assert e.min() > -50e-6 and e.max() < 100e-6, (e.min(), e.max())
    # a stimulus anywhere between two samples is put on the right sample (or the next)
    rng = np.random.default_rng(1)
    j = rng.integers(int(FS), len(p.stamps) - 10, 300)
    t = p.true_s[j] - rng.uniform(0, 1 / FS, j.size) + 1e-9
    for times in (fit.times(), lt):
        assert np.all(np.abs(stim_sample(times, t) - j) <= 1)


def test_fit_is_better_than_pyxdf_dejitter():
    """pyxdf's dejittering (a least-squares line per stretch between breaks of > 1 s)
    follows the mean of the stamps (late by the mean push delay) and smears a short loss
    over the whole stretch; the lower envelope in pieces does neither."""
    p = stamp_on_push(int(60 * FS), FS, seed=4, chunk_ms=(1.0, 50.0), stall_every_s=0.5,
                      drift_ppm=80.0, losses=[(30.0, 0.05)])
    k = np.arange(len(p.stamps))
    A = np.column_stack([np.ones_like(k, dtype=float), k])
    coef = np.linalg.lstsq(A, p.stamps, rcond=None)[0]
    pyxdf = A @ coef
    fit = fit_clock(p.stamps, FS).times()
    e_pyxdf = np.abs(pyxdf - p.true_s)
    e_fit = np.abs(fit - p.true_s)
    at = int(np.flatnonzero(np.diff(p.index) > 1)[0]) + 1  # first sample after the loss
    # the push group around the loss cannot be told apart from the stamps (its samples
    # before the loss look contiguous with those after): leave out 50 ms either side
    e_fit_out = np.delete(e_fit, np.arange(at - int(0.05 * FS), at + int(0.05 * FS)))
    assert np.percentile(e_pyxdf, 50) > 5e-3  # half the loss, everywhere
    assert e_fit_out.max() < 50e-6 and np.percentile(e_fit, 50) < 25e-6


def test_a_real_loss_inside_the_wobble_is_one_gap():
    p = stamp_on_push(int(40 * FS), FS, seed=5, chunk_ms=(1.0, 50.0), stall_every_s=0.5,
                      stall_ms=(3.0, 15.0), drift_ppm=100.0, losses=[(20.0, 0.05)])
    at = int(np.flatnonzero(np.diff(p.index) > 1)[0]) + 1  # first sample after the loss
    for clock in (fit_clock(p.stamps, FS), online(p.stamps)):
        assert len(clock.gaps) == 1, [(g.index, g.n_missing) for g in clock.gaps]
        g = clock.gaps[0]
        assert abs(g.n_missing - 250) <= 2
        assert at - int(0.05 * FS) <= g.index <= at  # placed at its push group's start
        assert g.duration_s == pytest.approx(0.05 + 1 / FS, abs=0.5e-3)
    # after the loss, samples are on their true times again
    t = fit_clock(p.stamps, FS).times()
    assert np.abs(t[at:] - p.true_s[at:]).max() < 50e-6


@pytest.mark.parametrize("stall_at", [-0.02, 0.03, 0.12])
def test_a_loss_next_to_a_stall_is_one_gap_at_the_loss(stall_at):
    """A stall just before the loss, or while its run is not yet confirmed: the gap is the
    loss, where it is, with its size (the stall is no gap)."""
    p = stamp_on_push(int(12 * FS), FS, seed=12, chunk_ms=1.0, delay_ms=(0.02, 0.3),
                      losses=[(6.0, 0.05)], stalls=[(6.0 + stall_at, 0.012)])
    at = int(np.flatnonzero(np.diff(p.index) > 1)[0]) + 1
    for clock in (fit_clock(p.stamps, FS), online(p.stamps)):
        assert len(clock.gaps) == 1, [(g.index, g.n_missing) for g in clock.gaps]
        g = clock.gaps[0]
        assert abs(g.n_missing - 250) <= 2 and at - 5 <= g.index <= at


@pytest.mark.parametrize("up_s, down_s, peak_s", [(1.0, 1.0, 0.1), (0.05, 3.0, 0.1),
                                                   (2.0, 0.2, 0.1), (3.0, 3.0, 0.6)])
def test_an_app_falling_behind_and_catching_up_is_no_gap(up_s, down_s, peak_s):
    """An overloaded app falls behind and catches up slowly: its stamps are late for
    seconds, but never steadily, so no samples are taken for missing; and samples never
    wait longer than MAX_WAIT_S for their time."""
    from mepkit.sources.clock import MAX_WAIT_S

    p = stamp_on_push(int(14 * FS), FS, seed=13, chunk_ms=1.0)
    t = p.true_s - p.true_s[0]
    late = np.interp(t, [4.0, 4.0 + up_s, 4.0 + up_s + down_s], [0.0, peak_s, 0.0], left=0,
                     right=0)
    ts = p.stamps.copy()
    a = 0
    for e in np.cumsum(p.chunk_n) - 1:  # each push later by the lag at its last sample
        ts[a:e + 1] += late[e]
        a = e + 1
    fit = fit_clock(ts, FS)
    assert fit.gaps == [] and len(fit.resets) == 0 and fit.warnings == []
    m = ClockModel(FS)
    out = np.empty(len(ts))
    pos, worst = 0, 0
    for c in p.chunk_n:
        m.update(ts[pos:pos + c], out[pos:pos + c])
        pos += c
        worst = max(worst, m.n_samples - m.settled)
    assert m.gaps == [] and m.n_resets == 0
    assert worst <= MAX_WAIT_S * FS + 10


@pytest.mark.parametrize("cuts", [[1] * 3000, [5000, 1, 2, 3, 7000], [250] * 200])
def test_live_model_does_not_depend_on_chunking(cuts):
    p = stamp_on_push(int(12 * FS), FS, seed=6, chunk_ms=(1.0, 20.0), stall_every_s=0.5,
                      losses=[(6.0, 0.02)])
    ref = online(p.stamps, chunks=[len(p.stamps)])
    got = online(p.stamps, chunks=cuts + [len(p.stamps)])
    np.testing.assert_array_equal(got.rows, ref.rows)
    assert [g.index for g in got.gaps] == [g.index for g in ref.gaps]


def test_live_times_are_final_once_settled_and_only_change_where_said():
    p = stamp_on_push(int(10 * FS), FS, seed=7, chunk_ms=4.0, stall_every_s=0.5,
                      losses=[(5.0, 0.05)])
    m = ClockModel(FS)
    given = np.full(len(p.stamps), np.nan)
    final = np.full(len(p.stamps), np.nan)
    pos = 0
    for c in p.chunk_n:
        m.update(p.stamps[pos:pos + c], given[pos:pos + c])
        if m.fix_from >= 0:
            given[m.fix_from:pos + c] = m.times(m.fix_from, pos + c)
        s = m.settled
        final[:s] = np.where(np.isnan(final[:s]), given[:s], final[:s])
        pos += c
    m.finish()
    np.testing.assert_array_equal(final[:m.settled], m.times(0, m.settled))
    assert m.settled == len(p.stamps)


def test_clock_reset_starts_a_timeline_a_stall_does_not():
    p = stamp_on_push(int(20 * FS), FS, seed=8, chunk_ms=4.0, stall_every_s=0.3,
                      stall_ms=(10.0, 40.0))
    ts = p.stamps.copy()
    ts[60000:] -= 250.0  # the outlet's machine restarted its clock
    for clock in (fit_clock(ts, FS), online(ts)):
        assert len(clock.resets) == 1 and clock.resets[0].index == 60000
        assert clock.gaps == []
        rows = clock.rows
        assert timeline_ranges(rows, len(ts)) == [(0, 60000), (60000, len(ts))]
        t = clock_times(rows, 0, len(ts))
        true = p.true_s.copy()
        true[60000:] -= 250.0
        assert np.abs(t - true)[int(FS):60000].max() < 100e-6
        assert np.abs(t - true)[60000 + int(FS):].max() < 100e-6


def test_rate_far_from_nominal_is_said_and_fitted(caplog):
    caplog.set_level(logging.WARNING)
    p = stamp_on_push(int(20 * 5100.0), 5100.0, seed=9, chunk_ms=4.0)  # really 5100 Hz
    fit = fit_clock(p.stamps, FS, name="AmpX")  # ... but says 5000
    assert any("'AmpX'" in w and "off its nominal 5000 Hz" in w for w in fit.warnings)
    assert re.search(r"advance at 5[01]\d\d\.\d\d Hz", caplog.text)
    assert fit.gaps == [] and fit.resets == []
    assert np.abs(fit.times() - p.true_s).max() < 100e-6


@pytest.mark.parametrize("kind", ["constant", "random", "backwards"])
def test_nonsense_stamps_warn_and_go_on_at_the_nominal_rate(kind, caplog):
    caplog.set_level(logging.WARNING)
    n = int(5 * FS)
    rng = np.random.default_rng(0)
    ts = {"constant": np.full(n, 77.0), "random": 50.0 + rng.uniform(0, 100, n),
          "backwards": 500.0 - np.arange(n) / FS}[kind]
    fit = fit_clock(ts, FS, name="Weird")
    assert any("'Weird'" in w and ("cannot be fitted" in w or "jumped back" in w)
               for w in fit.warnings), fit.warnings
    t = fit.times()
    assert np.all(np.isfinite(t))
    free = fit.free_from[0] if fit.free_from else None
    assert free is not None
    steps = np.diff(t[free:])
    np.testing.assert_allclose(steps, 1 / FS, rtol=1e-6)


def test_stamps_with_nan_are_timed_on_the_fit():
    p = stamp_on_push(int(5 * FS), FS, seed=10, chunk_ms=4.0)
    ts = p.stamps.copy()
    ts[10000:10040] = np.nan
    fit = fit_clock(ts, FS)
    assert fit.gaps == [] and np.abs(fit.times() - p.true_s).max() < 50e-6


# ---------------------------------------------------------------------------- XDF files
def xdf_with_pushed_stamps(tmp_path, *, seed, losses=(), n_pulses=14, **kw):
    """An XDF file as LabRecorder writes it from an app pushing without stamps, with MEPs
    at known amplifier samples and markers at their true times."""
    rng = np.random.default_rng(seed)
    dur = 2.0 + 1.5 * n_pulses
    n = int(dur * FS)
    pulses = (1.5 + np.arange(n_pulses) * 1.5 + rng.uniform(0, 0.3, n_pulses)) * FS
    pulses = pulses.astype(int)
    amps = rng.uniform(300, 2000, (n_pulses, 2))
    lats = rng.uniform(20, 25, (n_pulses, 2))
    data, _, _ = synthesize_recording(FS, 2, pulses / FS, amps, lats, duration_s=dur, seed=seed)
    p = stamp_on_push(n, FS, seed=seed, losses=list(losses), **kw)
    x = data[p.index].astype(np.float32)
    # the stimulator stamps the pulse between the pulse sample and the one before
    frac = rng.uniform(0.05, 0.95, n_pulses)
    marker_t = p.true_time(pulses) - frac / (FS * (1 + kw.get("drift_ppm", 0.0) * 1e-6))
    chans = [{"label": c, "unit": "microvolts", "type": "EMG"} for c in ("FDI", "APB")]
    emg = XdfStream("Amp", "EMG", "float32", FS, x, p.stamps, chans, source_id="amp")
    mk = XdfStream("Stim", "Markers", "string", 0.0,
                   [json.dumps({"intensity": 50 + i}) for i in range(n_pulses)], marker_t,
                   source_id="stim")
    path = tmp_path / f"pushed-{seed}.xdf"
    write_xdf(path, [emg, mk], chunk_duration_s=0.5)
    return str(path), p, pulses, amps, marker_t


@pytest.mark.parametrize("case", ["1ms", "50ms", "1-50ms"])
def test_xdf_with_pushed_stamps_every_trial_valid(tmp_path, case, caplog):
    caplog.set_level(logging.WARNING)
    path, p, pulses, amps, marker_t = xdf_with_pushed_stamps(tmp_path, seed=20, **CASES[case])
    out = analyze_file(path)
    assert "jump" not in caplog.text and "gap" not in caplog.text
    assert out.trial.nunique() == len(pulses)
    assert (out.reject_reason == "").all(), out.reject_reason.value_counts()
    got = out.pivot(index="trial", columns="channel", values="amplitude_uv")[["FDI", "APB"]]
    np.testing.assert_allclose(got.to_numpy(), amps, rtol=0.06)
    # the stimulus sample the pipeline uses, on the fitted clock: within one sample
    from mepkit.analyze import recording_clock
    from mepkit.sources.xdf import read_xdf

    times = recording_clock(read_xdf(path)).times()
    received = np.searchsorted(p.index, pulses)
    assert np.all(np.abs(stim_sample(times, marker_t) - received) <= 1)


def test_xdf_with_a_real_loss_flags_only_its_trial(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    n_pulses = 14
    rng = np.random.default_rng(21)
    pulses = ((1.5 + np.arange(n_pulses) * 1.5 + rng.uniform(0, 0.3, n_pulses)) * FS).astype(int)
    loss_at = pulses[6] / FS - 0.06  # 50 ms lost in the background of pulse 6
    path, p, pulses, amps, marker_t = xdf_with_pushed_stamps(
        tmp_path, seed=21, losses=[(loss_at, 0.05)], **CASES["1-50ms"])
    out = analyze_file(path)
    reasons = out.groupby("trial")["reject_reason"].first().tolist()
    assert reasons[6] == "gap" and reasons.count("gap") == 1, reasons
    assert all(r == "" for i, r in enumerate(reasons) if i != 6)
    assert "1 gap(s) in the EMG stream, 250 samples missing" in caplog.text


# ---------------------------------------------------------------------------- the Pipeline
@pytest.mark.parametrize("case", ["1ms", "20ms", "1-50ms"])
def test_pipeline_on_pushed_stamps_no_false_gap_and_rows_reproduce_it(case):
    """The Pipeline fed chunk by chunk with stamps made on push (as from an LSL inlet):
    no trial rejected for a gap (a step check rejected about a third), and the batch path
    given the Pipeline's clock rows (what a record stores) gives the same trials."""
    from mepkit.analyze import analyze_recording, trials_to_frame
    from mepkit.pipeline import Pipeline
    from mepkit.sources.xdf import Recording

    rng = np.random.default_rng(30)
    n_pulses, dur = 16, 14.0
    n = int(dur * FS)
    pulses = ((1.0 + np.arange(n_pulses) * 0.8 + rng.uniform(0, 0.1, n_pulses)) * FS).astype(int)
    amps = rng.uniform(300, 2000, (n_pulses, 2))
    data, _, _ = synthesize_recording(FS, 2, pulses / FS, amps, 22.0, duration_s=dur, seed=3)
    p = stamp_on_push(n, FS, seed=31, losses=[(7.0, 0.05)], **CASES[case])
    x = data[p.index]
    markers = p.true_time(pulses) - 0.3 / FS
    values = [json.dumps({"intensity": 60})] * n_pulses
    pipe = Pipeline(sfreq_hz=FS, channel_labels=["FDI", "APB"], stream_name="Amp")
    pipe.add_markers(markers, values)
    live, pos = [], 0
    for c in p.chunk_n:
        live += pipe.push(x[pos:pos + c], p.stamps[pos:pos + c])
        pos += c
    live += pipe.finish()
    assert pipe.clock.n_gaps == 1 and abs(pipe.clock.n_missing - 250) <= 2
    live_rows = trials_to_frame(live)
    lost_in = [i for i, s in enumerate(pulses) if s / FS - 0.11 <= 7.0 <= s / FS + 0.05]
    reasons = live_rows.groupby("trial")["reject_reason"].first()
    assert set(reasons[reasons != ""].index) == set(lost_in), reasons.tolist()
    rec = Recording(path="mem", sfreq_hz=FS, data=x, timestamps=p.stamps,
                    channel_labels=["FDI", "APB"], units=["uV", "uV"], marker_times=markers,
                    marker_values=values, clock_rows=pipe.clock.rows)
    again = analyze_recording(rec)
    cols = [c for c in live_rows.columns if c != "file"]
    import pandas as pd

    pd.testing.assert_frame_equal(live_rows[cols], again[cols], check_dtype=False)
