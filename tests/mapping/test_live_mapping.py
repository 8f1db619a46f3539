"""Live mapping: the neuronavigation stream matched to pulses, a closed-loop hotspot search
over real liblsl, and ``mepkit map`` / ``mepkit hotspot`` end to end."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("pylsl")

from mepkit.live import LiveSession  # noqa: E402
from mepkit.records import open_record  # noqa: E402
from mepkit.sim.outlet import SimulatedAmplifier  # noqa: E402
from mepkit.sim.stimulator import SimulatedStimulator  # noqa: E402
from mepkit.sim.subject import VirtualSubject  # noqa: E402
from mepkit.sources.positions import PositionTrack  # noqa: E402
from mepkit_cli.main import main  # noqa: E402

pytestmark = pytest.mark.timeout(120)

FAST = ["--interval", "0.3", "--jitter", "0.2", "--relax", "0.2"]


def _amp(**kw) -> SimulatedAmplifier:
    sid = f"nav-{uuid.uuid4().hex[:8]}"
    return SimulatedAmplifier(name=f"{sid}-emg", source_id=sid, channels=["FDI_R"], **kw)


def _session(amp, path=None, **kw) -> LiveSession:
    return LiveSession(emg=amp.name, markers=amp.marker_name, source_id=amp.source_id,
                       marker_source_id=amp.marker_source_id, positions=amp.navigation_name,
                       positions_source_id=amp.navigation_source_id, record_path=path, **kw)


def _trial_of(session, pulse, timeout=3.0):
    t_emg = session.emg.to_emg_clock(pulse.time_s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tr = session.next_trial(timeout=0.2)
        if tr is not None and abs(tr.stim_time_s - t_emg) < 0.01:
            return tr
    raise AssertionError(f"no trial for the pulse at {pulse.time_s}")


# ---------------------------------------------------------------------- matching rule
def test_position_track_takes_the_last_sample_at_or_before_the_pulse_within_the_max_age():
    tr = PositionTrack(0, 1, 2)
    t = np.array([1.0, 1.1, 1.2, 1.3])
    xyz = np.column_stack([10 * t, -t, np.zeros(4)])
    tr.add(xyz, t)
    m = tr.match(1.25, max_age_s=0.2)
    assert m.ok and m.x_mm == pytest.approx(12.0) and m.age_s == pytest.approx(0.05)
    m = tr.match(1.3, max_age_s=0.2)  # a sample exactly at the pulse counts
    assert m.ok and m.x_mm == pytest.approx(13.0) and m.age_s == 0.0
    lag = tr.match(1.9, max_age_s=0.25)  # a stream that lags or stopped
    assert not lag.ok and math.isnan(lag.x_mm) and lag.age_s == pytest.approx(0.6)
    assert "600 ms old" in lag.problem and "max 250 ms" in lag.problem
    early = tr.match(0.5)
    assert not early.ok and "no position sample" in early.problem
    # a tracker that lost the coil sends NaN: the sample before it is used if young enough
    tr.add(np.array([[np.nan, np.nan, np.nan]]), np.array([1.35]))
    assert tr.match(1.36, max_age_s=0.1).x_mm == pytest.approx(13.0)


# ---------------------------------------------------------------------- the stream, live
def test_navigation_positions_are_matched_to_pulses_and_recorded(tmp_path):
    """Markers carry no position: each trial's x/y/z comes from the virtual navigation
    stream, equal to where the stimulator put the coil within the hand jitter."""
    path = tmp_path / "nav.h5"
    amp = _amp(navigation=True, marker_positions=False, navigation_jitter_mm=0.5)
    targets = [(0.0, 0.0), (10.0, -10.0), (-20.0, 15.0), (5.0, 5.0)]
    got = []
    try:
        with _session(amp, path) as s:
            stim = SimulatedStimulator(amp)
            for x, y in targets:
                pulse = stim.fire(60, x, y, "left")
                assert '"x_mm"' not in pulse.marker
                got.append(_trial_of(s, pulse))
                time.sleep(0.2)
            status = s.status
    finally:
        amp.stop()
    for (x, y), tr in zip(targets, got):
        d = math.hypot(tr.stim.x_mm - x, tr.stim.y_mm - y)
        assert d < 2.5, (x, y, tr.stim)  # 0.5 mm SD per axis: 2.5 mm is > 3.5 SD radially
        assert math.isfinite(tr.stim.z_mm) and abs(tr.stim.z_mm) < 2.5
    # the jitter is there: these are measured positions, not the targets copied
    assert any(tr.stim.x_mm != x for (x, _), tr in zip(targets, got))
    assert status.positions > 0 and status.positions_missing == 0
    with open_record(path) as rec:
        assert rec.session["position_stream"] == amp.navigation_name
        pos = rec.streams[amp.navigation_name]
        assert pos.n_samples >= 10 and pos.type == "Position"
        assert pos.channel_labels[:3] == ["x_mm", "y_mm", "z_mm"] and pos.units[0] == "mm"
        data, ts = pos.read()
        assert np.all(np.diff(ts) > 0)
        fdi = rec.trials[rec.trials["channel"] == "FDI_R"].sort_values("trial")
        assert np.allclose(fdi["x_mm"], [t.stim.x_mm for t in got])
        # the recorded raw stream gives the same match again
        track = PositionTrack(0, 1, 2)
        track.add(data, ts)
        for tr in got:
            assert track.match(tr.stim_time_s).x_mm == pytest.approx(tr.stim.x_mm)


def test_marker_position_wins_over_the_navigation_stream():
    amp = _amp(navigation=True, marker_positions=True, navigation_jitter_mm=2.0)
    try:
        with _session(amp) as s:
            pulse = SimulatedStimulator(amp).fire(60, 7.0, -3.0, "left")
            tr = _trial_of(s, pulse)
    finally:
        amp.stop()
    assert (tr.stim.x_mm, tr.stim.y_mm) == (7.0, -3.0)


def test_a_position_stream_that_stops_leaves_trials_without_position_and_goes_on(
        tmp_path, caplog):
    path = tmp_path / "stops.h5"
    amp = _amp(navigation=True, marker_positions=False)
    try:
        with _session(amp, path) as s:
            stim = SimulatedStimulator(amp)
            first = _trial_of(s, stim.fire(60, 0.0, 0.0, "left"))
            amp.pause_navigation()  # the tracker loses the coil
            time.sleep(0.6)
            with caplog.at_level(logging.WARNING, logger="mepkit.live"):
                lost = _trial_of(s, stim.fire(60, 10.0, 0.0, "left"))
            amp.resume_navigation()
            time.sleep(0.3)
            back = _trial_of(s, stim.fire(60, 0.0, 10.0, "left"))
            status = s.status
            assert s.running
    finally:
        amp.stop()
    assert math.isfinite(first.stim.x_mm) and math.isfinite(back.stim.y_mm)
    assert math.isnan(lost.stim.x_mm) and math.isnan(lost.stim.y_mm)
    assert np.isfinite(lost.amplitude_uv).all()  # the trial itself is measured
    msgs = [r.getMessage() for r in caplog.records if "no coil position" in r.getMessage()]
    assert len(msgs) == 1 and amp.navigation_name in msgs[0] and "ms old" in msgs[0]
    assert status.positions_missing == 1 and "1 trials without" in status.line()
    with open_record(path) as rec:
        ev = rec.events[rec.events["kind"] == "position-missing"]
        assert len(ev) == 1 and amp.navigation_name in ev["detail"].iloc[0]
        assert rec.trials["trial"].nunique() == 3


def test_a_lagging_position_stream_gives_no_position():
    """Samples that arrive later than the max age (a slow tracker) are not used."""
    amp = _amp(navigation=True, marker_positions=False, navigation_delay_s=0.6)
    try:
        with _session(amp, position_max_age_s=0.25) as s:
            time.sleep(0.8)
            tr = _trial_of(s, SimulatedStimulator(amp).fire(60, 0.0, 0.0, "left"))
            assert s.status.positions_missing == 1
    finally:
        amp.stop()
    assert math.isnan(tr.stim.x_mm)


# ---------------------------------------------------------------------- closed loop
def test_closed_loop_hotspot_search_over_lsl(tmp_path):
    """The GP search, fed live trials at the positions the navigation stream measured,
    finds the virtual subject's hotspot in <= 20 pulses."""
    from mepkit.protocols.mapping import make_hotspot_search
    from mepkit.protocols.runner import run_protocol

    path = tmp_path / "hotspot.h5"
    subject = VirtualSubject.from_preset("healthy", seed=3)
    true_xy = subject.hotspot("left", "FDI")
    intensity = round(1.15 * subject.true_rmt("left"), 1)
    sid = f"hs-{uuid.uuid4().hex[:8]}"
    amp = SimulatedAmplifier(subject, name=f"{sid}-emg", source_id=sid,
                             channels=["FDI_R", "APB_R"], seed=3, navigation=True,
                             marker_positions=False)
    search = make_hotspot_search(((-20, 20), (-20, 20)), intensity_pct_mso=intensity,
                                 max_pulses=20, hemisphere="left", seed=3)
    t0 = time.monotonic()
    try:
        with _session(amp, path, session="hotspot") as s:
            result = run_protocol(s, SimulatedStimulator(amp), search, channel="FDI_R",
                                  min_interval_s=0.25, jitter=0.2, relax_s=0.2, seed=3)
    finally:
        amp.stop()
    assert time.monotonic() - t0 < 30
    assert result.reason == "done" and result.saved
    est = result.estimate
    err = math.hypot(est.hotspot_mm[0] - true_xy[0], est.hotspot_mm[1] - true_xy[1])
    assert err <= 5.0, (est, true_xy)
    assert est.n_pulses <= 20
    steps = result.steps
    # the search learned from measured positions (jittered), the proposals are kept too
    assert all(st["proposed_x_mm"] is not None for st in steps)
    assert any(st["x_mm"] != st["proposed_x_mm"] for st in steps if st["counted"])
    with open_record(path) as rec:
        rows = [st.data for st in rec.protocol_steps]
        assert len(rows) == len(steps) == est.n_pulses
        stored = rec.protocol_results["hotspot-gp"]
        assert stored["estimate"]["hotspot_mm"] == list(est.hotspot_mm)
        assert stored["n_pulses"] == len(steps)
        assert amp.navigation_name in rec.streams


# ---------------------------------------------------------------------- commands
def cli(*args, stdin=None, timeout=100):
    return subprocess.run([sys.executable, "-m", "mepkit_cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_mepkit_map_simulate_end_to_end(tmp_path):
    out, fig = tmp_path / "map.h5", tmp_path / "map.png"
    res = cli("map", "--simulate", "--grid", "3x3", "--spacing", "10", "--per-site", "1",
              "--seed", "4", "--n-boot", "200", "-o", str(out), "--figure", str(fig), *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    pulses = [ln for ln in res.stdout.splitlines() if ln.startswith("pulse ")]
    assert len(pulses) == 9 and " mm " in pulses[0]
    assert "CoG x" in res.stdout and "hotspot r" in res.stdout and "area" in res.stdout
    assert fig.stat().st_size > 1000
    with open_record(out) as rec:
        steps = [s.data for s in rec.protocol_steps]
        assert len(steps) == 9 and len({s["site"] for s in steps}) == 9
        result = rec.protocol_results["grid-mapping"]
        est = result["estimate"]
        assert result["complete"] and est["n_sites"] == 9 and est["n_trials"] == 9
        assert set(est["ci"]) >= {"cog_x_mm", "cog_y_mm", "area_mm2"}
        assert est["options"]["n_boot"] == 200
        # positions came from the navigation stream (markers have none), near the sites
        assert not any('"x_mm"' in v for v in rec.markers.values)
        fdi = rec.trials[rec.trials["channel"] == "FDI_R"]
        assert fdi["x_mm"].notna().all() and (fdi["x_mm"] % 10 != 0).any()
        for s in steps:
            assert math.hypot(s["x_mm"] - s["proposed_x_mm"], s["y_mm"] - s["proposed_y_mm"]) < 3


def test_mepkit_map_manual_tells_where_to_put_the_coil(tmp_path, monkeypatch, capsys):
    """A manual stimulator: the operator is told the site, x/y mm and intensity; 'q' stops.
    (In this process: the command's start-up is covered by the --simulate test.)"""
    import io
    import signal

    out = tmp_path / "manual.h5"
    amp = _amp()
    monkeypatch.setattr(sys, "stdin", io.StringIO("\nq\n"))
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        rc = main(["map", "--stimulator", "manual", "--emg", amp.name, "--markers",
                   amp.marker_name, "--source-id", amp.source_id, "--marker-source-id",
                   amp.marker_source_id, "--grid", "2x2", "--spacing", "20", "--intensity",
                   "55", "--trial-timeout", "0.3", "-o", str(out), *FAST])
    finally:
        amp.stop()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    res = capsys.readouterr()
    assert rc == 1, res.err[-3000:]
    prompts = res.err.split("Set ")[1:]
    assert len(prompts) == 2
    assert prompts[0].startswith("55 %MSO") and "coil at x=" in prompts[0] \
        and "site=r" in prompts[0]
    assert "x=-10.0 mm" in res.err or "x=10.0 mm" in res.err
    assert "operator aborted" in res.out
    with open_record(out) as rec:
        (step,) = [st.data for st in rec.protocol_steps]
        assert step["rejected"] and step["site"] in prompts[0]


@pytest.mark.parametrize("argv, message", [
    (["map", "--simulate", "--grid", "7y7"], "does not parse"),
    (["map", "--simulate", "--grid", "3x3", "--spacing", "-2"], "--spacing must be > 0"),
    (["map", "--simulate", "--per-site", "0"], "--per-site must be >= 1"),
    (["map", "--simulate", "--intensity", "50", "--rmt", "40"], "not both"),
    (["map", "--simulate", "--figure", "x.txt"], "--figure"),
    (["map", "--simulate", "--positions", "Coil"], "--simulate makes its own streams"),
    (["map", "--emg", "E", "--markers", "M", "--position-max-age", "0"],
     "--position-max-age must be > 0"),
    (["map", "--emg", "E", "--markers", "M"], "no intensity"),
    (["hotspot", "--simulate", "--bounds", "5", "1", "0", "3"], "X0 < X1"),
    (["hotspot", "--simulate", "--intensity", "150"], "within (0, 100]"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    rc = main([*argv, "-o", str(tmp_path / "x.h5"), "--resolve-timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "x.h5").exists()


def test_grid_map_counts_a_pulse_measured_off_its_cell_at_the_planned_site():
    """Neuronavigation may report the coil outside its site's cell (the operator drifted):
    the map is still made, the pulse counted at the planned site, and a note says so."""
    import dataclasses

    from mepkit.protocols.mapping import GridMapping

    g = GridMapping("2x2@10", 50.0, per_site=1, seed=0)
    off_site = None
    while not g.done:
        stim = g.propose()
        if off_site is None:  # the first pulse lands 7 mm off (cells are ±5 mm)
            off_site = stim.site
            stim = dataclasses.replace(stim, x_mm=stim.x_mm + 7.0)
        g.observe_stimulus(stim, 100.0)
    m = g.estimate.metrics
    assert m.n_sites == 4 and list(m.site_count) == [1, 1, 1, 1]
    assert any("outside their site's cell" in n and "counted at the planned site" in n
               for n in m.notes)
