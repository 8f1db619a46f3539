"""Tests of the simulated amplifier's LSL outlets (real liblsl over loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest

from mepkit.markers import parse_marker
from mepkit.sim.outlet import SimulatedAmplifier
from mepkit.sim.stimulator import SimulatedStimulator, StimulatorError
from mepkit.sim.subject import VirtualSubject

pytestmark = pytest.mark.timeout(20)

FS = 5000.0
ROOT = Path(__file__).resolve().parents[2]


def _sid() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def _inlet(source_id: str, **kw) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, timeout=5.0)
    assert len(found) == 1, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=30, **kw)
    inlet.open_stream(timeout=5.0)
    return inlet


def _pull(inlets, seconds: float, during=None):
    """Pull every inlet for ``seconds``; call ``during(t)`` each loop. Returns lists."""
    data = [[] for _ in inlets]
    stamps = [[] for _ in inlets]
    t_start = time.monotonic()
    while (elapsed := time.monotonic() - t_start) < seconds:
        if during is not None:
            during(elapsed)
        for i, inlet in enumerate(inlets):
            d, ts = inlet.pull_chunk(timeout=0.0, max_samples=100000)
            if ts:
                data[i].extend(d)
                stamps[i].extend(ts)
        time.sleep(0.01)
    return data, stamps


@pytest.fixture
def subject():
    return VirtualSubject.from_preset("healthy", seed=1)


def test_stream_info_labels_units(subject):
    sid = _sid()
    with SimulatedAmplifier(subject, source_id=sid, ttl=True, n_channels=8) as amp:
        emg = _inlet(sid)
        info = emg.info(timeout=5.0)
        assert (info.name(), info.type(), info.source_id()) == ("mepkit-virtual-emg", "EMG", sid)
        assert info.channel_count() == 9 and info.nominal_srate() == FS
        assert info.channel_format() == pylsl.cf_float32
        labels, units, types = [], [], []
        ch = info.desc().child("channels").child("channel")
        while not ch.empty():
            labels.append(ch.child_value("label"))
            units.append(ch.child_value("unit"))
            types.append(ch.child_value("type"))
            ch = ch.next_sibling("channel")
        assert labels == list(subject.channels) + ["EMG7", "EMG8", "TRIG"] == list(amp.channels)
        assert units == ["microvolts"] * 8 + ["V"]
        assert types == ["EMG"] * 8 + ["TTL"]
        assert info.desc().child("acquisition").child_value("manufacturer") == "mepkit"

        mk = _inlet(sid + "-markers")
        minfo = mk.info(timeout=5.0)
        assert (minfo.name(), minfo.type()) == ("mepkit-virtual-emg-markers", "Markers")
        assert minfo.channel_count() == 1 and minfo.channel_format() == pylsl.cf_string
        assert minfo.nominal_srate() == pylsl.IRREGULAR_RATE


@pytest.mark.parametrize("stamps", ["push", "ideal"])
def test_real_time_rate_timestamps_and_pulse_alignment(subject, stamps):
    from mepkit.sources.clock import fit_clock

    sid = _sid()
    with SimulatedAmplifier(subject, source_id=sid, ttl=True, stamps=stamps) as amp:
        emg, mk = _inlet(sid), _inlet(sid + "-markers")
        fired = []

        def during(t):
            if t > 0.5 and not fired:
                fired.append(amp.fire(70, hemisphere="left", site="hotspot"))
            if t > 1.2 and len(fired) == 1:  # the other hemisphere, at a position
                fired.append(amp.fire(75, 3.0, -2.0, "right", condition="test"))

        emg.pull_chunk(timeout=0.0, max_samples=1000000)  # drop what queued up so far
        t_a = pylsl.local_clock()
        (d, m), (ts, mts) = _pull([emg, mk], 2.2, during)
        t_b = pylsl.local_clock()
        stats = amp.timing_stats()

    x = np.asarray(d, dtype=float)
    ts = np.asarray(ts)
    # real time: the stream advances with the clock, at the nominal rate
    n_expected = (t_b - t_a) * FS
    assert abs(len(ts) - n_expected) < 0.05 * FS, (len(ts), n_expected)
    assert ts[-1] == pytest.approx(t_b, abs=0.1)
    assert stats["p50_ms"] < 2.0
    if stamps == "ideal":
        assert len(ts) == round((ts[-1] - ts[0]) * FS) + 1  # no gaps
        np.testing.assert_allclose(np.diff(ts), 1 / FS, rtol=1e-6)
        times = ts
    else:  # stamped by liblsl at each push: late by the push delay, back-filled
        assert not np.allclose(np.diff(ts), 1 / FS, rtol=1e-6)
        fit = fit_clock(ts, FS)
        assert fit.gaps == [] and fit.resets == []
        times = fit.times()
        ts = times
    # one marker per pulse, parsable, stamped on its pulse sample
    assert len(mts) == 2
    for p, stamp, sample in zip(fired, mts, m):
        info = parse_marker(sample[0])
        assert not info.problems
        assert info.intensity_pct_mso == p.intensity_pct_mso
        assert info.hemisphere == p.hemisphere
        assert stamp == pytest.approx(p.time_s, abs=1e-6)
        # the artifact starts on that very sample: big jump against the 2 ms before
        k = int(np.argmin(np.abs(ts - stamp)))
        assert abs(ts[k] - stamp) < 0.5 / FS
        base = np.median(x[k - 10:k, :6], axis=0)
        jump = np.abs(x[k - 10:k + 10, :6] - base).max(axis=1)
        onset = int(np.argmax(jump > 1000)) + k - 10
        assert abs(onset - k) <= 1
        # TTL rising edge at the same sample, 1 ms long
        trig = x[:, 6]
        edge = k - 10 + int(np.argmax(trig[k - 10:k + 10] > 0.5))
        assert abs(edge - k) <= 1
        assert trig[edge:edge + 5].min() == 1.0 and trig[edge + 5] == 0.0
    # MEPs: visible on the stimulated side with the true size, absent on the other
    p = fired[0]
    k = int(np.argmin(np.abs(ts - p.time_s)))
    seg = x[k + int(0.015 * FS):k + int(0.050 * FS)]
    p2p = seg.max(axis=0) - seg.min(axis=0)
    true = p.truth["amplitude_uv"]
    assert true[0] > 200  # 70 %MSO is far above this subject's threshold
    assert p2p[0] == pytest.approx(true[0], rel=0.2, abs=100)
    assert p2p[3] < 150  # FDI_L: noise, mains and drift only
    assert np.isnan(p.truth["latency_ms"][3])
    # ground truth rows
    gt = amp.ground_truth
    assert [g["intensity_pct_mso"] for g in gt] == [70.0, 75.0]
    assert gt[1]["x_mm"] == 3.0 and gt[1]["condition"] == "test"
    assert gt[1]["channels"] == list(subject.channels)


def test_drift_and_stalls_in_stamps_made_on_push(subject):
    """The amplifier's clock runs 100 ppm fast and the app stalls: the stamps show it
    (late by up to a stall, back-filled ones overlapping), the ground truth stays exact,
    and the fitted clock puts every pulse on its sample."""
    from mepkit.sources.clock import fit_clock

    sid = _sid()
    with SimulatedAmplifier(subject, source_id=sid, chunk_ms=4.0, drift_ppm=100.0,
                            stall_every_s=0.25, stall_ms=(3.0, 15.0), seed=2) as amp:
        emg = _inlet(sid)
        pulses = []

        def during(t):
            if len(pulses) < int(t / 0.3):
                pulses.append(amp.fire(60))

        (d,), (ts,) = _pull([emg], 3.0, during)
        assert amp.n_stalls >= 3
    ts = np.asarray(ts)
    assert np.diff(ts).min() < 0  # held-up chunks overlap the one before
    fit = fit_clock(ts, FS)
    assert fit.gaps == [] and fit.resets == []
    rate = (len(ts) - 1) / (fit.times()[-1] - fit.times()[0])
    assert rate == pytest.approx(FS * (1 + 100e-6), abs=FS * 70e-6)  # 3 s: +-70 ppm
    # the inlet's first sample: the one whose true time its fitted time is closest to
    x = np.asarray(d, dtype=float)
    for p in pulses[1:]:
        assert p.time_s == amp.time_of_sample(p.sample_index)
        k = int(np.searchsorted(fit.times(), p.time_s))
        base = np.median(x[k - 10:k, :6], axis=0)
        onset = int(np.argmax(np.abs(x[k - 10:k + 10, :6] - base).max(axis=1) > 1000)) + k - 10
        assert abs(onset - k) <= 1


def test_marker_delay_and_scheduled_pulse(subject):
    sid = _sid()
    with SimulatedAmplifier(subject, source_id=sid, marker_delay_s=0.4, chunk_ms=2.0) as amp:
        mk = _inlet(sid + "-markers")
        time.sleep(0.2)
        at = pylsl.local_clock() + 0.3
        p = amp.fire(60, at_s=at)
        assert p.time_s >= at and p.time_s - at < 1 / FS
        arrival = None
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            sample, stamp = mk.pull_sample(timeout=0.01)
            if sample is not None:
                arrival = pylsl.local_clock()
                break
        assert arrival is not None
        assert stamp == pytest.approx(p.time_s, abs=1e-6)  # the stamp stays exact
        assert arrival - p.time_s > 0.39  # ... but it came late (more on a loaded machine)
        assert arrival - p.time_s < 2.0


def test_auto_pulses_and_stimulator(subject):
    sid = _sid()
    with SimulatedAmplifier(subject, source_id=sid, markers=False, seed=3) as amp:
        amp.auto_pulses((40, 60), (0.2, 0.3), "both", n_pulses=4, first_after_s=0.1)
        stim = SimulatedStimulator(amp)
        time.sleep(1.3)
        pulses = amp.pulses
        assert len(pulses) == 4
        isi = np.diff([p.time_s for p in pulses])
        assert np.all((isi >= 0.2 - 1 / FS) & (isi <= 0.3 + 1 / FS))
        assert all(40 <= p.intensity_pct_mso <= 60 and p.intensity_pct_mso == int(p.intensity_pct_mso)
                   for p in pulses)
        p = stim.fire(50, hemisphere="right")
        assert amp.wait_pushed(p)
        assert amp.n_pushed > p.sample_index
    with pytest.raises(StimulatorError, match="not running"):
        stim.fire(50)


def test_restart_keeps_source_id(subject):
    sid = _sid()
    amp = SimulatedAmplifier(subject, source_id=sid)
    try:
        emg = _inlet(sid)
        (d1,), (ts1,) = _pull([emg], 0.5)
        amp.restart(gap_s=0.5)
        # the re-created outlet is found under the same source_id and streams on
        emg2 = _inlet(sid)
        (d2,), (ts2,) = _pull([emg2], 0.5)
        assert len(ts1) > 0.3 * FS and len(ts2) > 0.3 * FS
        assert ts2[-1] - ts1[-1] > 0.5 + 0.3  # the time stamps jump by the pause
        from mepkit.sources.clock import fit_clock

        assert fit_clock(np.asarray(ts2), FS).gaps == []
        p = amp.fire(60)
        assert amp.wait_pushed(p)
        assert p.time_s == pytest.approx(amp.time_of_sample(p.sample_index))
        amp.stop()
        # a new amplifier with the same source_id is found again
        amp = SimulatedAmplifier(subject, source_id=sid)
        assert len(pylsl.resolve_byprop("source_id", sid, timeout=5.0)) >= 1
    finally:
        amp.stop()


def test_cli_simulate_subprocess():
    sid = _sid()
    cmd = [sys.executable, "-m", "mepkit_cli.main", "simulate", "--duration", "2",
           "--auto-pulses", "--isi", "0.5", "0.6", "--source-id", sid, "--ttl"]
    t = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=15, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t < 10
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("pulse")]
    assert 2 <= len(lines) <= 4, res.stdout
    assert "FDI_R=" in lines[0] and "%MSO" in lines[0]
    assert sid in res.stdout


def test_cli_simulate_stdin_commands():
    sid = _sid()
    cmd = [sys.executable, "-m", "mepkit_cli.main", "simulate", "--source-id", sid,
           "--duration", "8", "--channels", "FDI_R,APB_R"]
    res = subprocess.run(cmd, input="fire 55\nfire 60 x=10 y=-5 hemisphere=right\nfire x\n"
                         "contract R 0.5\ncontract R soon\ncontract both 1\nquit\n",
                         capture_output=True, text=True, timeout=15, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("pulse")]
    assert len(lines) == 2 and "55.0 %MSO" in lines[0] and "x=10.0 y=-5.0" in lines[1]
    assert "not an intensity" in res.stderr
    assert "contract needs seconds" in res.stderr and "hand must be 'R' or 'L'" in res.stderr
    assert "stopped after" in res.stdout  # 'quit' ended it before --duration


def test_cli_bad_arguments():
    cmd = [sys.executable, "-m", "mepkit_cli.main", "simulate", "--isi", "3", "1",
           "--duration", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=15, cwd=ROOT)
    assert res.returncode == 2 and "--isi" in res.stderr


def test_voluntary_contractions_are_scheduled_and_recorded():
    from dataclasses import replace

    subject = VirtualSubject.from_preset("healthy", seed=2)
    subject = VirtualSubject(subject.hemispheres, seed=2, name="busy", emg=replace(
        subject.emg, contraction_rate_per_min=120.0, contraction_duration_s=(0.2, 0.3)))
    with SimulatedAmplifier(subject, source_id=_sid(), markers=False) as amp:
        time.sleep(2.0)
        episodes = list(amp.contractions)
    assert len(episodes) >= 1
    for e in episodes:
        assert 0.19 <= e["stop_s"] - e["start_s"] <= 0.31
        assert e["channels"] in (["FDI_R", "APB_R", "ADM_R"], ["FDI_L", "APB_L", "ADM_L"])


def test_pulse_during_a_contraction_is_facilitated():
    """A pulse on the plateau of a contraction of the answering hand meets the active
    threshold; one during a contraction of the other hand does not."""
    subject = VirtualSubject.from_preset("healthy", seed=2)
    rmt = subject.true_rmt("left")
    with SimulatedAmplifier(subject, source_id=_sid(), markers=False) as amp:
        right = amp.contract(0.5, "R", at_s=amp.time_of_sample(amp.n_pushed) + 0.2)
        t = right["start_s"]
        left = amp.contract(0.5, "L", at_s=t + 1.0)
        on_plateau = amp.fire(rmt, hemisphere="left", at_s=t + 0.25)
        other_hand = amp.fire(rmt, hemisphere="left", at_s=t + 1.25)
        at_rest = amp.fire(rmt, hemisphere="left", at_s=t + 2.0)
        with pytest.raises(ValueError, match="hand"):
            amp.contract(1.0, "both")
    assert right["channels"] == ["FDI_R", "APB_R", "ADM_R"] and left["stop_s"] > t + 1.49
    assert [right, left] == amp.contractions
    c = list(amp.emg_channels).index("FDI_R")
    assert on_plateau.truth["activation"] == 1.0
    assert other_hand.truth["activation"] == 0.0 and at_rest.truth["activation"] == 0.0
    assert on_plateau.truth["expected_amplitude_uv"][c] == pytest.approx(
        subject.expected_amplitude(rmt, hemisphere="left", activation=1.0))
    assert at_rest.truth["expected_amplitude_uv"][c] == pytest.approx(50.0)
